/**
 * `/admin/v1/webhooks` on the key service's admin API (docs/webhooks.md "Admin API"): the same
 * routes as the relay's, served by @latchkey/webhooks `handleWebhookAdmin` over fastify, for the
 * key service's own outbox (`keys/webhooks.db`: `key.rotated`, `contact.shredded`).
 * Authenticated by the admin API key before any body is read. Endpoints subscribe only to the
 * events the key service emits (KEY_SERVICE_WEBHOOK_EVENTS).
 */
import type { FastifyInstance } from 'fastify';
import { KEY_SERVICE_WEBHOOK_EVENTS, WEBHOOK_PATHS } from '@latchkey/protocol';
import { createAdminAuthenticator, type AdminKey } from '@latchkey/tokens';
import { handleWebhookAdmin, type WebhookAdminLog, type WebhookService } from '@latchkey/webhooks';

export function registerWebhookRoutes(
  app: FastifyInstance,
  opts: {
    webhooks: WebhookService;
    keys: readonly AdminKey[];
    ipAllowlist?: readonly string[];
    log?: WebhookAdminLog;
  },
): void {
  const auth = createAdminAuthenticator(
    opts.keys,
    opts.ipAllowlist === undefined ? {} : { ipAllowlist: opts.ipAllowlist },
  );
  const log: WebhookAdminLog = opts.log ?? (() => undefined);
  for (const url of [WEBHOOK_PATHS.endpoints, `${WEBHOOK_PATHS.endpoints}/*`]) {
    app.route({
      method: ['GET', 'POST', 'DELETE'],
      url,
      onRequest: async (req) => {
        auth.check(req.headers.authorization, req.socket.remoteAddress);
      },
      handler: async (req, reply) => {
        const pathname = new URL(req.url, 'http://localhost').pathname;
        const answer = await handleWebhookAdmin(
          opts.webhooks,
          { method: req.method, pathname, body: async () => req.body ?? {} },
          log,
          { name: 'key service', emits: KEY_SERVICE_WEBHOOK_EVENTS },
        );
        // Only paths under /admin/v1/webhooks reach this handler.
        if (answer === null) return reply.callNotFound();
        return reply.code(answer.status).send(answer.body);
      },
    });
  }
}
