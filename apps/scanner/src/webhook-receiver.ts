/**
 * The scanner's HTTP side: it receives the relay's signed webhooks (docs/webhooks.md), checks
 * each with @latchkey/webhooks `createWebhookVerifier` (HMAC over id, timestamp and raw body,
 * constant-time, a 5-minute window, a replayed id refused) before parsing anything, validates
 * the payload with its zod schema and hands the event on. `GET /healthz` says whether clamd
 * answers. Bodies are bounded (64 KiB); nothing of a body is logged.
 *
 * Answers: 204 handled (or an event the scanner does not need), 401 a signature that does not
 * verify, 400 a payload that does not parse, 413 too large, 503 when the handler failed in a
 * way worth a retry, or while no secret is set yet: the relay's outbox then delivers the event
 * again later.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  createReplayGuard,
  createWebhookVerifier,
  WebhookPayload,
  WebhookVerificationError,
} from '@latchkey/webhooks';
import type { ScannerLog } from './log.ts';

/** Largest webhook body read. The relay's events are a few hundred bytes. */
const MAX_BODY = 64 * 1024;

/** What the receiver does with a verified, parsed event: resolves when handled. */
export type EventHandler = (event: WebhookPayload) => Promise<'done' | 'retry'>;

export interface ReceiverOptions {
  host: string;
  port: number;
  /** The path the relay's endpoint URL names (default `/webhooks`). */
  path?: string;
  /** The endpoint's secret(s), `whsec_...` (two while rotating); none yet: `setSecrets` later. */
  secrets: readonly string[];
  onEvent: EventHandler;
  health(): Promise<boolean>;
  log: ScannerLog;
}

export interface Receiver {
  /** `http://host:port/path`: the URL to register as the relay's webhook endpoint. */
  url: string;
  /** Replaces the secrets calls are verified with (after a rotation, or once registered). */
  setSecrets(secrets: readonly string[]): void;
  close(): Promise<void>;
}

function readBody(req: IncomingMessage): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        resolve(null);
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function answer(res: ServerResponse, status: number): void {
  if (!res.headersSent) res.writeHead(status, { 'content-length': '0' }).end();
}

/** Starts the receiver on `host:port` (0 picks a free port). */
export async function startReceiver(opts: ReceiverOptions): Promise<Receiver> {
  const path = opts.path ?? '/webhooks';
  // One replay guard for every verifier: an id seen under the old secrets stays refused.
  const guard = createReplayGuard();
  let verifier =
    opts.secrets.length === 0
      ? null
      : createWebhookVerifier([...opts.secrets], { replayGuard: guard });
  const log = opts.log;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://scanner');
    if (req.method === 'GET' && url.pathname === '/healthz') {
      const ok = await opts.health();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ clamd: ok ? 'ok' : 'unreachable' }));
      return;
    }
    if (url.pathname !== path) return answer(res, 404);
    if (req.method !== 'POST') return answer(res, 405);
    const body = await readBody(req);
    if (body === null) return answer(res, 413);
    if (!verifier) return answer(res, 503);
    let raw: unknown;
    try {
      raw = verifier.verify(body, req.headers);
    } catch (err) {
      const code = err instanceof WebhookVerificationError ? err.reason : 'BAD_BODY';
      log({ event: 'webhook.refused', code });
      return answer(res, 401);
    }
    const event = WebhookPayload.safeParse(raw);
    if (!event.success) {
      // A verified call of a type this scanner does not know (webhook.test, a newer event).
      const type = (raw as { type?: unknown } | null)?.type;
      log({ event: 'webhook.ignored', code: typeof type === 'string' ? type.slice(0, 40) : '?' });
      return answer(res, typeof type === 'string' ? 204 : 400);
    }
    const outcome = await opts.onEvent(event.data as WebhookPayload);
    answer(res, outcome === 'done' ? 204 : 503);
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => {
      log({ event: 'webhook.failed', code: 'INTERNAL' });
      answer(res, 500);
    });
  });
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    url: `http://${host}:${port}${path}`,
    setSecrets(secrets) {
      if (secrets.length === 0) throw new RangeError('at least one secret is needed');
      verifier = createWebhookVerifier([...secrets], { replayGuard: guard });
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
