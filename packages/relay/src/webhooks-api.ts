/**
 * `/admin/v1/webhooks` on the relay's admin API (docs/webhooks.md): add, list with status, get,
 * remove, test, dead-letter list, replay, rotate-secret. Called by admin-api.ts after the API key
 * was checked; bodies are the zod schemas of @latchkey/protocol `webhooks.ts`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  AddWebhookRequest,
  LatchkeyError,
  ReplayWebhookRequest,
  RotateWebhookSecretRequest,
  WebhookEndpointId,
  parseRequest as parse,
  type DeadLettersResponse,
  type ListWebhooksResponse,
  type ReplayWebhookResponse,
  type WebhookEndpointResponse,
  type WebhookSecretResponse,
} from '@latchkey/protocol';
import type { WebhookService } from '@latchkey/webhooks';
import { readJson, send } from './admin-api.ts';

const ROUTE = /^\/admin\/v1\/webhooks(?:\/([^/]{1,64})(?:\/(test|dead-letters|replay|rotate-secret))?)?\/?$/;

type Log = (e: { event: string; [k: string]: string | number | boolean | undefined }) => void;

function checkUrl(raw: string): void {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new LatchkeyError('BAD_REQUEST', 'url is not a valid URL');
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new LatchkeyError('BAD_REQUEST', 'url must be https (or http on loopback)');
  if (u.username || u.password) throw new LatchkeyError('BAD_REQUEST', 'url must not carry credentials');
}

/** Serves the request when it is under /admin/v1/webhooks (returns true). */
export async function webhookRoute(hooks: WebhookService, req: IncomingMessage, res: ServerResponse, url: URL, log: Log): Promise<boolean> {
  if (url.pathname !== '/admin/v1/webhooks' && !url.pathname.startsWith('/admin/v1/webhooks/')) return false;
  const m = ROUTE.exec(url.pathname);
  if (!m) throw new LatchkeyError('NOT_FOUND', 'no such endpoint');
  const [, rawId, action] = m;
  const method = req.method ?? 'GET';
  const now = Date.now();
  const { outbox } = hooks;
  if (rawId === undefined) {
    if (method === 'GET') {
      send(res, 200, { endpoints: outbox.listEndpoints(now) } satisfies ListWebhooksResponse);
      return true;
    }
    if (method !== 'POST') throw new LatchkeyError('NOT_FOUND', 'no such endpoint');
    const body = parse(AddWebhookRequest, await readJson(req));
    checkUrl(body.url);
    const added = outbox.addEndpoint(body, now);
    log({ event: 'webhook-added', endpoint: added.endpoint.id });
    send(res, 201, added satisfies WebhookSecretResponse);
    return true;
  }
  const id = parse(WebhookEndpointId, rawId);
  const existing = outbox.endpoint(id, now);
  if (!existing) throw new LatchkeyError('NOT_FOUND', 'no such webhook endpoint');
  switch (action) {
    case undefined:
      if (method === 'GET') send(res, 200, { endpoint: existing } satisfies WebhookEndpointResponse);
      else if (method === 'DELETE') {
        outbox.removeEndpoint(id);
        log({ event: 'webhook-removed', endpoint: id });
        send(res, 200, { endpoint: existing } satisfies WebhookEndpointResponse);
      } else throw new LatchkeyError('NOT_FOUND', 'no such endpoint');
      return true;
    case 'dead-letters':
      if (method !== 'GET') throw new LatchkeyError('NOT_FOUND', 'no such endpoint');
      send(res, 200, { deadLetters: outbox.deadLetters(id) } satisfies DeadLettersResponse);
      return true;
    case 'test':
    case 'replay':
    case 'rotate-secret':
      break;
  }
  if (method !== 'POST') throw new LatchkeyError('NOT_FOUND', 'no such endpoint');
  const body = await readJson(req);
  switch (action as 'test' | 'replay' | 'rotate-secret') {
    case 'test':
      send(res, 200, await hooks.test(id));
      return true;
    case 'replay': {
      const { eventIds } = parse(ReplayWebhookRequest, body);
      const replayed = outbox.replay(id, now, eventIds);
      log({ event: 'webhook-replay', endpoint: id, replayed });
      hooks.wake();
      send(res, 200, { replayed } satisfies ReplayWebhookResponse);
      return true;
    }
    case 'rotate-secret': {
      const { overlapSeconds } = parse(RotateWebhookSecretRequest, body);
      const rotated = outbox.rotateSecret(id, now, (overlapSeconds ?? 86_400) * 1000);
      log({ event: 'webhook-secret-rotated', endpoint: id });
      send(res, 200, rotated satisfies WebhookSecretResponse);
      return true;
    }
  }
  return false;
}
