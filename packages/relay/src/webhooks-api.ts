/**
 * `/admin/v1/webhooks` on the relay's admin API (docs/webhooks.md): the routes of
 * @latchkey/webhooks `handleWebhookAdmin` over node:http. Called by admin-api.ts after the API
 * key was checked. Endpoints subscribe only to events the relay emits (RELAY_WEBHOOK_EVENTS).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { RELAY_WEBHOOK_EVENTS } from '@latchkey/protocol';
import { handleWebhookAdmin, type WebhookAdminLog, type WebhookService } from '@latchkey/webhooks';
import { readJson, send } from './http-json.ts';

/** Serves the request when it is under /admin/v1/webhooks (returns true). */
export async function webhookRoute(
  hooks: WebhookService,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  log: WebhookAdminLog,
): Promise<boolean> {
  const answer = await handleWebhookAdmin(
    hooks,
    { method: req.method ?? 'GET', pathname: url.pathname, body: () => readJson(req) },
    log,
    { name: 'relay', emits: RELAY_WEBHOOK_EVENTS },
  );
  if (answer === null) return false;
  send(res, answer.status, answer.body);
  return true;
}
