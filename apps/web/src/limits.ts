/**
 * Limits of the web server against anonymous visitors (issue 13 item 9; docs/operations.md
 * "Quotas and limits"): a cap on open connections per client IP and in all, Node's header,
 * request, keep-alive and idle timeouts (so half-sent requests cannot hold file descriptors),
 * and a request rate per client IP answered with 429 RATE_LIMITED and `Retry-After`. One call,
 * `registerWebLimits(app, limits)`, right after the Fastify instance is created.
 */
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { normaliseIp } from '@latchkey/tokens';

export interface WebLimits {
  /** Open connections per client IP; more are closed at once (LATCHKEY_WEB_MAX_CONNECTIONS_PER_IP). */
  maxConnectionsPerIp: number;
  /** Open connections in all (LATCHKEY_WEB_MAX_CONNECTIONS). */
  maxConnections: number;
  /** Time for a request's headers, ms (LATCHKEY_WEB_HEADERS_TIMEOUT_MS). */
  headersTimeoutMs: number;
  /** Time for a whole request, ms (LATCHKEY_WEB_REQUEST_TIMEOUT_MS). */
  requestTimeoutMs: number;
  /** Idle time between kept-alive requests, ms (LATCHKEY_WEB_KEEPALIVE_TIMEOUT_MS). */
  keepAliveTimeoutMs: number;
  /** A socket silent this long is closed, ms (LATCHKEY_WEB_IDLE_TIMEOUT_MS). */
  idleTimeoutMs: number;
  /** Requests per second per client IP, refilled continuously (LATCHKEY_WEB_RATE_PER_IP `N/BURST`). */
  ratePerSecond: number;
  /** Requests one IP may make at once. */
  rateBurst: number;
}

/** A page load is a handful of requests; a browser keeps about six connections per host. */
export const WEB_LIMITS: Readonly<WebLimits> = {
  maxConnectionsPerIp: 64,
  maxConnections: 4096,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 20_000,
  keepAliveTimeoutMs: 5_000,
  idleTimeoutMs: 30_000,
  ratePerSecond: 50,
  rateBurst: 200,
};

const ENV: Readonly<Record<Exclude<keyof WebLimits, 'ratePerSecond' | 'rateBurst'>, string>> = {
  maxConnectionsPerIp: 'LATCHKEY_WEB_MAX_CONNECTIONS_PER_IP',
  maxConnections: 'LATCHKEY_WEB_MAX_CONNECTIONS',
  headersTimeoutMs: 'LATCHKEY_WEB_HEADERS_TIMEOUT_MS',
  requestTimeoutMs: 'LATCHKEY_WEB_REQUEST_TIMEOUT_MS',
  keepAliveTimeoutMs: 'LATCHKEY_WEB_KEEPALIVE_TIMEOUT_MS',
  idleTimeoutMs: 'LATCHKEY_WEB_IDLE_TIMEOUT_MS',
};

/**
 * The defaults, then the environment, then `over`, checked.
 * @throws RangeError naming the setting (never its value) when one is malformed.
 */
export function resolveWebLimits(
  over: Partial<WebLimits> = {},
  env: Readonly<Record<string, string | undefined>> = process.env,
): WebLimits {
  const l: WebLimits = { ...WEB_LIMITS };
  for (const [k, name] of Object.entries(ENV) as [keyof typeof ENV, string][]) {
    const t = env[name]?.trim();
    if (t === undefined || t === '') continue;
    if (!/^\d{1,9}$/.test(t)) throw new RangeError(`${name} must be a positive integer`);
    l[k] = Number(t);
  }
  const rate = env.LATCHKEY_WEB_RATE_PER_IP?.trim();
  if (rate !== undefined && rate !== '') {
    const m = /^(\d+(?:\.\d+)?)\/(\d+)$/.exec(rate);
    if (!m) throw new RangeError('LATCHKEY_WEB_RATE_PER_IP must be PER_SECOND/BURST, e.g. 50/200');
    l.ratePerSecond = Number(m[1]);
    l.rateBurst = Number(m[2]);
  }
  for (const [k, v] of Object.entries(over) as [keyof WebLimits, number | undefined][])
    if (v !== undefined) l[k] = v;
  for (const [k, v] of Object.entries(l)) {
    if (!(Number.isFinite(v) && v > 0)) throw new RangeError(`web limit ${k} must be positive`);
  }
  return l;
}

/**
 * Connection caps and timeouts on the Node server, and the per-IP request rate as the first
 * `onRequest` hook.
 * @throws RangeError on a malformed limit (options or LATCHKEY_WEB_* environment).
 */
export function registerWebLimits(app: FastifyInstance, over?: Partial<WebLimits>): void {
  const l = resolveWebLimits(over);
  const server = app.server;
  server.maxConnections = l.maxConnections;
  server.headersTimeout = l.headersTimeoutMs;
  server.requestTimeout = Math.max(l.requestTimeoutMs, l.headersTimeoutMs);
  server.keepAliveTimeout = l.keepAliveTimeoutMs;
  // Node checks header and request deadlines on this interval (read when it starts listening).
  (server as { connectionsCheckingInterval?: number }).connectionsCheckingInterval = Math.min(
    30_000,
    Math.max(100, Math.floor(l.headersTimeoutMs / 4)),
  );
  server.setTimeout(l.idleTimeoutMs, (socket: Socket) => socket.destroy());
  const open = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const ip = normaliseIp(socket.remoteAddress);
    const n = (open.get(ip) ?? 0) + 1;
    if (n > l.maxConnectionsPerIp) {
      socket.destroy();
      return;
    }
    open.set(ip, n);
    socket.once('close', () => {
      const left = (open.get(ip) ?? 1) - 1;
      if (left <= 0) open.delete(ip);
      else open.set(ip, left);
    });
  });
  // A token bucket per IP; refilled ones are forgotten.
  const buckets = new Map<string, { tokens: number; at: number }>();
  const refill = (b: { tokens: number; at: number }, now: number): void => {
    b.tokens = Math.min(l.rateBurst, b.tokens + ((now - b.at) * l.ratePerSecond) / 1000);
    b.at = now;
  };
  const sweeper = setInterval(() => {
    const now = Date.now();
    for (const [ip, b] of buckets) {
      refill(b, now);
      if (b.tokens >= l.rateBurst) buckets.delete(ip);
    }
  }, 10_000);
  sweeper.unref();
  app.addHook('onClose', async () => clearInterval(sweeper));
  app.addHook('onRequest', async (req, reply) => {
    const ip = normaliseIp(req.socket.remoteAddress);
    const now = Date.now();
    let b = buckets.get(ip);
    if (!b) buckets.set(ip, (b = { tokens: l.rateBurst, at: now }));
    refill(b, now);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return undefined;
    }
    const wait = Math.max(1, Math.ceil((1 - b.tokens) / l.ratePerSecond));
    return reply
      .code(429)
      .header('retry-after', String(wait))
      .header('cache-control', 'no-store')
      .type('application/json; charset=utf-8')
      .send({ error: { code: 'RATE_LIMITED', message: 'too many requests from this address' } });
  });
}
