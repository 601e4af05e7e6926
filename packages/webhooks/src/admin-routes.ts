/**
 * The `/admin/v1/webhooks` routes (docs/webhooks.md "Admin API"), independent of the HTTP
 * framework: add, list with status, get, remove, test, dead-letter list, replay, retry,
 * rotate-secret. `add` refuses a subscription to an event the service never emits, and answers
 * with a `warning` when deliveries to the URL would be refused now (not on the allowlist).
 * The relay (node:http) and the key service (fastify) both serve them through this function,
 * after they checked the admin key; bodies are the zod schemas of @latchkey/protocol `webhooks.ts`.
 */
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
  type RetryWebhookResponse,
  type WebhookEndpointResponse,
  type WebhookEventType,
  type WebhookSecretResponse,
} from '@latchkey/protocol';
import type { WebhookService } from './service.ts';

const ROUTE =
  /^\/admin\/v1\/webhooks(?:\/([^/]{1,64})(?:\/(test|dead-letters|replay|retry|rotate-secret))?)?\/?$/;

export interface WebhookAdminRequest {
  method: string;
  pathname: string;
  /** Reads the JSON body (`{}` when empty); called only for routes that take one. */
  body(): Promise<unknown>;
}

export interface WebhookAdminAnswer {
  status: number;
  body: unknown;
}

/** Which service serves the routes: its name (in messages) and every event it emits. */
export interface WebhookAdminService {
  name: string;
  emits: readonly WebhookEventType[];
}

export type WebhookAdminLog = (e: {
  event: string;
  [k: string]: string | number | boolean | undefined;
}) => void;

/** Is the path under /admin/v1/webhooks? */
export function isWebhookAdminPath(pathname: string): boolean {
  return pathname === '/admin/v1/webhooks' || pathname.startsWith('/admin/v1/webhooks/');
}

function checkUrl(raw: string): void {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new LatchkeyError('BAD_REQUEST', 'url is not a valid URL');
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:')
    throw new LatchkeyError('BAD_REQUEST', 'url must be https (or http on loopback)');
  if (u.username || u.password)
    throw new LatchkeyError('BAD_REQUEST', 'url must not carry credentials');
}

/**
 * Serves one request under /admin/v1/webhooks; null when the path is elsewhere. Without
 * `service`, an endpoint may subscribe to any event type.
 * @throws LatchkeyError NOT_FOUND (route or endpoint), BAD_REQUEST (body, or a subscription to
 *   an event the service never emits), as the caller's error answer.
 */
export async function handleWebhookAdmin(
  hooks: WebhookService,
  req: WebhookAdminRequest,
  log: WebhookAdminLog,
  service?: WebhookAdminService,
): Promise<WebhookAdminAnswer | null> {
  if (!isWebhookAdminPath(req.pathname)) return null;
  const m = ROUTE.exec(req.pathname);
  if (!m) throw new LatchkeyError('NOT_FOUND', 'no such endpoint');
  const [, rawId, action] = m;
  const method = req.method;
  const now = Date.now();
  const { outbox } = hooks;
  if (rawId === undefined) {
    if (method === 'GET')
      return {
        status: 200,
        body: { endpoints: await outbox.listEndpoints(now) } satisfies ListWebhooksResponse,
      };
    if (method !== 'POST') throw new LatchkeyError('NOT_FOUND', 'no such endpoint');
    const body = parse(AddWebhookRequest, await req.body());
    checkUrl(body.url);
    if (service) {
      const never = (body.events ?? []).filter((e) => !service.emits.includes(e));
      if (never.length > 0)
        throw new LatchkeyError(
          'BAD_REQUEST',
          `the ${service.name} never emits ${never.join(', ')} (it emits ${service.emits.join(', ')})`,
        );
    }
    const warning = await hooks.checkUrl(body.url);
    const added = await outbox.addEndpoint(body, now);
    log({
      event: 'webhook-added',
      endpoint: added.endpoint.id,
      ...(warning ? { warning: warning.code } : {}),
    });
    return {
      status: 201,
      body: { ...added, ...(warning ? { warning } : {}) } satisfies WebhookSecretResponse,
    };
  }
  const id = parse(WebhookEndpointId, rawId);
  const existing = await outbox.endpoint(id, now);
  if (!existing) throw new LatchkeyError('NOT_FOUND', 'no such webhook endpoint');
  switch (action) {
    case undefined:
      if (method === 'GET')
        return { status: 200, body: { endpoint: existing } satisfies WebhookEndpointResponse };
      if (method !== 'DELETE') throw new LatchkeyError('NOT_FOUND', 'no such endpoint');
      await outbox.removeEndpoint(id);
      log({ event: 'webhook-removed', endpoint: id });
      return { status: 200, body: { endpoint: existing } satisfies WebhookEndpointResponse };
    case 'dead-letters':
      if (method !== 'GET') throw new LatchkeyError('NOT_FOUND', 'no such endpoint');
      return {
        status: 200,
        body: { deadLetters: await outbox.deadLetters(id) } satisfies DeadLettersResponse,
      };
    case 'test':
    case 'replay':
    case 'retry':
    case 'rotate-secret':
      break;
  }
  if (method !== 'POST') throw new LatchkeyError('NOT_FOUND', 'no such endpoint');
  const body = await req.body();
  switch (action as 'test' | 'replay' | 'retry' | 'rotate-secret') {
    case 'test':
      return { status: 200, body: await hooks.test(id) };
    case 'replay': {
      const { eventIds } = parse(ReplayWebhookRequest, body);
      const replayed = await outbox.replay(id, now, eventIds);
      log({ event: 'webhook-replay', endpoint: id, replayed });
      hooks.wake();
      return { status: 200, body: { replayed } satisfies ReplayWebhookResponse };
    }
    case 'retry': {
      const r = await hooks.retry(id);
      log({ event: 'webhook-retry-now', endpoint: id, pending: r.pending, dead: r.dead });
      return { status: 200, body: r satisfies RetryWebhookResponse };
    }
    case 'rotate-secret': {
      const { overlapSeconds } = parse(RotateWebhookSecretRequest, body);
      const rotated = await outbox.rotateSecret(id, now, (overlapSeconds ?? 86_400) * 1000);
      log({ event: 'webhook-secret-rotated', endpoint: id });
      return { status: 200, body: rotated satisfies WebhookSecretResponse };
    }
  }
}
