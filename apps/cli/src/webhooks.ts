/**
 * `latchkey webhooks add|list|remove|test|replay|retry|rotate-secret|dead-letters` (README
 * "Command line", API in docs/webhooks.md): the /admin/v1/webhooks routes of the relay (default)
 * or, with `--service keys`, of the key service (its own outbox: key.rotated, contact.shredded),
 * with the admin key and endpoints of the other admin commands. `add` of a URL the service would
 * refuse to call now (a loopback or private address not on its `--webhook-allowlist`) succeeds
 * and prints a `warning:` line on stderr.
 */
import {
  AddWebhookRequest,
  DeadLettersResponse,
  ErrorResponse,
  LatchkeyError,
  ListWebhooksResponse,
  ReplayWebhookResponse,
  RetryWebhookResponse,
  WEBHOOK_PATHS,
  WebhookEndpointId,
  WebhookEndpointResponse,
  WebhookEventType,
  WebhookSecretResponse,
  WebhookTestResponse,
  type WebhookEndpointInfo,
  type WebhookUrlWarning,
} from '@latchkey/protocol';
import { target, type AdminFlags } from './admin.ts';
import { EXIT, UsageError } from './usage.ts';

type Out = (line: string) => void;

export interface WebhookFlags extends AdminFlags {
  url?: string | undefined;
  events?: string | undefined;
  description?: string | undefined;
  id?: string | undefined;
  event?: string | undefined;
  json?: boolean | undefined;
  /** `relay` (default) or `keys`: whose outbox. */
  service?: string | undefined;
}

type Service = 'relay' | 'keys';

interface Schema<T> {
  safeParse(v: unknown): { success: true; data: T } | { success: false };
}

async function call<T>(
  flags: WebhookFlags,
  method: string,
  path: string,
  schema: Schema<T>,
  body?: unknown,
): Promise<T> {
  const service = serviceOf(flags.service);
  const name = service === 'keys' ? 'key service' : 'relay';
  const t = await target(flags);
  let res: Response;
  try {
    res = await fetch(`${service === 'keys' ? t.keys : t.relay}${path}`, {
      method,
      headers: {
        authorization: t.authorization,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (err) {
    if (err instanceof Error && err.name === 'TimeoutError')
      throw new LatchkeyError('TIMEOUT', `${name}: no answer`);
    throw new LatchkeyError('UNAVAILABLE', `${name}: cannot connect`);
  }
  const json = (await res.json().catch(() => undefined)) as unknown;
  if (!res.ok) {
    const e = ErrorResponse.safeParse(json);
    if (e.success) throw new LatchkeyError(e.data.error.code, `${name}: ${e.data.error.message}`);
    throw new LatchkeyError(
      res.status === 404 ? 'NOT_FOUND' : 'UNAVAILABLE',
      `${name}: HTTP ${res.status}`,
    );
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new LatchkeyError('UNAVAILABLE', `${name}: unexpected answer`);
  return parsed.data;
}

function serviceOf(v: string | undefined): Service {
  if (v === undefined || v === 'relay') return 'relay';
  if (v === 'keys') return 'keys';
  throw new UsageError('--service must be relay or keys');
}

function endpointId(v: string | undefined): string {
  if (v === undefined) throw new UsageError('--id is required');
  if (!WebhookEndpointId.safeParse(v).success)
    throw new UsageError('--id must be an endpoint id (ep_...)');
  return v;
}

/** `ID URL events=... pending=N dead=N delivered=N last-error=CODE message|none` */
export function formatEndpoint(e: WebhookEndpointInfo): string {
  const s = e.status;
  const err = s.lastError ? `${s.lastError.code} ${s.lastError.message}` : 'none';
  return `${e.id} ${e.url} events=${e.events?.join(',') ?? 'all'} pending=${s.pending} dead=${s.dead} delivered=${s.delivered} last-error=${err}`;
}

/** The stderr line of `add` when the service would refuse to call the URL now. */
export function formatWarning(w: WebhookUrlWarning): string {
  const why =
    w.code === 'ADDRESS_REFUSED'
      ? 'calls are refused until the service is started with it in --webhook-allowlist'
      : 'calls to it fail as things stand';
  return `warning: ${w.code} ${w.message}; ${why}`;
}

const stderr: Out = (line) => {
  process.stderr.write(`${line}\n`);
};

export async function webhooks(
  sub: string | undefined,
  flags: WebhookFlags,
  out: Out,
  warn: Out = stderr,
): Promise<number> {
  serviceOf(flags.service);
  switch (sub ?? '') {
    case 'add': {
      if (flags.url === undefined) throw new UsageError('--url is required');
      const events = flags.events
        ?.split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      for (const e of events ?? [])
        if (!WebhookEventType.safeParse(e).success)
          throw new UsageError(`unknown event type: ${e}`);
      const body = AddWebhookRequest.parse({
        url: flags.url,
        ...(events ? { events } : {}),
        ...(flags.description === undefined ? {} : { description: flags.description }),
      });
      const r = await call(flags, 'POST', WEBHOOK_PATHS.endpoints, WebhookSecretResponse, body);
      if (r.warning) warn(formatWarning(r.warning));
      out(`added ${r.endpoint.id} ${r.endpoint.url}`);
      out(`secret: ${r.secret}`);
      return EXIT.ok;
    }
    case 'rotate-secret': {
      const id = endpointId(flags.id);
      const r = await call(
        flags,
        'POST',
        WEBHOOK_PATHS.rotateSecret(id),
        WebhookSecretResponse,
        {},
      );
      out(`rotated ${r.endpoint.id}`);
      out(`secret: ${r.secret}`);
      return EXIT.ok;
    }
    case 'retry': {
      const id = endpointId(flags.id);
      const r = await call(flags, 'POST', WEBHOOK_PATHS.retry(id), RetryWebhookResponse, {});
      out(`retried pending=${r.pending} dead=${r.dead}`);
      return EXIT.ok;
    }
    case 'list': {
      const r = await call(flags, 'GET', WEBHOOK_PATHS.endpoints, ListWebhooksResponse);
      for (const e of r.endpoints) out(flags.json ? JSON.stringify(e) : formatEndpoint(e));
      return EXIT.ok;
    }
    case 'remove': {
      const id = endpointId(flags.id);
      await call(flags, 'DELETE', WEBHOOK_PATHS.endpoint(id), WebhookEndpointResponse);
      out(`removed ${id}`);
      return EXIT.ok;
    }
    case 'test': {
      const id = endpointId(flags.id);
      const r = await call(flags, 'POST', WEBHOOK_PATHS.test(id), WebhookTestResponse, {});
      if (!r.ok)
        throw new LatchkeyError(
          'UNAVAILABLE',
          `test call failed: ${r.error?.code ?? 'HTTP_STATUS'} ${r.error?.message ?? ''}`.trim(),
        );
      out(`ok ${id} status=${r.status ?? 0}`);
      return EXIT.ok;
    }
    case 'replay': {
      const id = endpointId(flags.id);
      const eventIds = flags.event
        ?.split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      const r = await call(
        flags,
        'POST',
        WEBHOOK_PATHS.replay(id),
        ReplayWebhookResponse,
        eventIds ? { eventIds } : {},
      );
      out(`replayed ${r.replayed}`);
      return EXIT.ok;
    }
    case 'dead-letters': {
      const id = endpointId(flags.id);
      const r = await call(flags, 'GET', WEBHOOK_PATHS.deadLetters(id), DeadLettersResponse);
      for (const d of r.deadLetters) {
        out(
          flags.json
            ? JSON.stringify(d)
            : `${d.eventId} ${d.type} sequence=${d.sequence} ${new Date(d.createdAt).toISOString()} attempts=${d.attempts} last-error=${d.lastError ? `${d.lastError.code} ${d.lastError.message}` : 'none'}`,
        );
      }
      return EXIT.ok;
    }
    default:
      throw new UsageError(
        'webhooks takes add, list, remove, test, replay, retry, rotate-secret or dead-letters',
      );
  }
}
