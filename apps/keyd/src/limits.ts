/**
 * Limits of the key service against anonymous visitors (issue 13 item 9; docs/operations.md
 * "Quotas and limits"): a cap on open connections per client IP and in all, Node's header,
 * request and keep-alive timeouts and an idle timeout (so half-sent requests cannot hold file
 * descriptors), a request rate per client IP, and a key-request rate per participant of a
 * contact (per token holder), answered with RATE_LIMITED (HTTP 429) and `Retry-After`.
 *
 * Everything hangs off one call, `registerLimits(app, limits, principalOf)`, made right after
 * the Fastify instance is created. Unset limits come from the environment
 * (`LATCHKEY_KEYS_*`, see `limitsFromEnv`), else from DEFAULT_KEY_SERVICE_LIMITS.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ERROR_CODES, type ErrorResponse } from '@latchkey/protocol';
import { normaliseIp } from '@latchkey/tokens';

/** A token bucket's shape: `perSecond` refills continuously up to `burst`. */
export interface Rate {
  perSecond: number;
  burst: number;
}

export interface KeyServiceLimits {
  /** Open connections from one client IP; more are closed at once (default 64). */
  maxConnectionsPerIp: number;
  /** Open connections in all (`server.maxConnections`, default 4,096). */
  maxConnections: number;
  /** Time for a request's headers to arrive (`server.headersTimeout`, ms; default 10 s). */
  headersTimeoutMs: number;
  /** Time for a whole request to arrive (`server.requestTimeout`, ms; default 20 s). */
  requestTimeoutMs: number;
  /** Idle time of a kept-alive connection between requests (ms; default 5 s). */
  keepAliveTimeoutMs: number;
  /** A socket with no traffic this long is closed (Fastify's `connectionTimeout`, ms; default 30 s). */
  idleTimeoutMs: number;
  /** Requests per client IP (default 50/s, burst 200). */
  perIp: Rate;
  /** Key and statement requests per participant of a contact (default 2/s, burst 20). */
  perParticipant: Rate;
}

export const DEFAULT_KEY_SERVICE_LIMITS: Readonly<KeyServiceLimits> = {
  maxConnectionsPerIp: 64,
  maxConnections: 4096,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 20_000,
  keepAliveTimeoutMs: 5_000,
  idleTimeoutMs: 30_000,
  perIp: { perSecond: 50, burst: 200 },
  perParticipant: { perSecond: 2, burst: 20 },
};

/** Environment variables of each limit (rates as `PER_SECOND/BURST`, e.g. `2/20`). */
export const LIMIT_ENV: Readonly<Record<keyof KeyServiceLimits, string>> = {
  maxConnectionsPerIp: 'LATCHKEY_KEYS_MAX_CONNECTIONS_PER_IP',
  maxConnections: 'LATCHKEY_KEYS_MAX_CONNECTIONS',
  headersTimeoutMs: 'LATCHKEY_KEYS_HEADERS_TIMEOUT_MS',
  requestTimeoutMs: 'LATCHKEY_KEYS_REQUEST_TIMEOUT_MS',
  keepAliveTimeoutMs: 'LATCHKEY_KEYS_KEEPALIVE_TIMEOUT_MS',
  idleTimeoutMs: 'LATCHKEY_KEYS_IDLE_TIMEOUT_MS',
  perIp: 'LATCHKEY_KEYS_RATE_PER_IP',
  perParticipant: 'LATCHKEY_KEYS_RATE_PER_PARTICIPANT',
};

/**
 * The limits set in `env` (unset ones left out).
 * @throws RangeError naming the variable (never its value) when one is malformed.
 */
export function limitsFromEnv(
  env: Readonly<Record<string, string | undefined>>,
): Partial<KeyServiceLimits> {
  const out: Partial<KeyServiceLimits> = {};
  for (const [key, name] of Object.entries(LIMIT_ENV) as [keyof KeyServiceLimits, string][]) {
    const text = env[name]?.trim();
    if (text === undefined || text === '') continue;
    if (key === 'perIp' || key === 'perParticipant') {
      const m = /^(\d+(?:\.\d+)?)\/(\d+)$/.exec(text);
      if (!m) throw new RangeError(`${name} must be PER_SECOND/BURST, e.g. 2/20`);
      out[key] = { perSecond: Number(m[1]), burst: Number(m[2]) };
    } else {
      if (!/^\d{1,9}$/.test(text)) throw new RangeError(`${name} must be a positive integer`);
      out[key] = Number(text);
    }
  }
  resolveLimits(out, (name) => LIMIT_ENV[name]);
  return out;
}

/**
 * `over` on top of the environment's and the defaults, checked.
 * @throws RangeError when a limit is not positive.
 */
export function resolveLimits(
  over: Partial<KeyServiceLimits> = {},
  label: (k: keyof KeyServiceLimits) => string = (k) => k,
): KeyServiceLimits {
  const l: KeyServiceLimits = { ...DEFAULT_KEY_SERVICE_LIMITS };
  for (const [k, v] of Object.entries(over) as [keyof KeyServiceLimits, never][])
    if (v !== undefined) l[k] = v;
  for (const [k, v] of Object.entries(l) as [keyof KeyServiceLimits, number | Rate][]) {
    const ok =
      typeof v === 'number'
        ? Number.isSafeInteger(v) && v >= 1
        : Number.isFinite(v.perSecond) &&
          v.perSecond > 0 &&
          Number.isSafeInteger(v.burst) &&
          v.burst >= 1;
    if (!ok) throw new RangeError(`${label(k)} must be positive`);
  }
  return l;
}

/** A token bucket that refills continuously; `take` answers how long to wait when empty. */
class Bucket {
  #tokens: number;
  #last = Date.now();
  constructor(readonly rate: Rate) {
    this.#tokens = rate.burst;
  }
  #refill(): void {
    const now = Date.now();
    this.#tokens = Math.min(
      this.rate.burst,
      this.#tokens + ((now - this.#last) * this.rate.perSecond) / 1000,
    );
    this.#last = now;
  }
  /** 0 when a token was taken, else the milliseconds until one will be there. */
  take(): number {
    this.#refill();
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - this.#tokens) * 1000) / this.rate.perSecond);
  }
  get full(): boolean {
    this.#refill();
    return this.#tokens >= this.rate.burst;
  }
}

/** Buckets by key, forgetting those that have refilled (checked every `sweepMs`). */
class Buckets {
  readonly #map = new Map<string, Bucket>();
  constructor(readonly rate: Rate) {}
  take(key: string): number {
    let b = this.#map.get(key);
    if (!b) this.#map.set(key, (b = new Bucket(this.rate)));
    return b.take();
  }
  sweep(): void {
    for (const [k, b] of this.#map) if (b.full) this.#map.delete(k);
  }
}

function refuse(reply: FastifyReply, waitMs: number, message: string): FastifyReply {
  const body: ErrorResponse = { error: { code: 'RATE_LIMITED', message } };
  return reply
    .code(ERROR_CODES.RATE_LIMITED.http)
    .header('retry-after', String(Math.max(1, Math.ceil(waitMs / 1000))))
    .header('cache-control', 'no-store')
    .type('application/json; charset=utf-8')
    .send(body);
}

/**
 * Caps connections per IP and in all, and sets the server's timeouts (any Node HTTP(S) server).
 */
export function guardServer(
  server: Server,
  l: Pick<
    KeyServiceLimits,
    | 'maxConnectionsPerIp'
    | 'maxConnections'
    | 'headersTimeoutMs'
    | 'requestTimeoutMs'
    | 'keepAliveTimeoutMs'
    | 'idleTimeoutMs'
  >,
): void {
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
  const perIp = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const ip = normaliseIp(socket.remoteAddress);
    const n = (perIp.get(ip) ?? 0) + 1;
    if (n > l.maxConnectionsPerIp) {
      socket.destroy();
      return;
    }
    perIp.set(ip, n);
    socket.once('close', () => {
      const left = (perIp.get(ip) ?? 1) - 1;
      if (left <= 0) perIp.delete(ip);
      else perIp.set(ip, left);
    });
  });
}

/**
 * Installs every limit on the key service's Fastify instance: call it once, right after the
 * instance is created. `principalOf` gives the authenticated participant of a request once its
 * route's `onRequest` authenticated it (undefined for unauthenticated routes).
 * @throws RangeError on a malformed limit (options or environment).
 */
export function registerLimits(
  app: FastifyInstance,
  limits: Partial<KeyServiceLimits> | undefined,
  principalOf: (req: FastifyRequest) => { contactId: string; participantId: string } | undefined,
): void {
  const l = resolveLimits({ ...limitsFromEnv(process.env), ...limits });
  guardServer(app.server, l);
  const byIp = new Buckets(l.perIp);
  const byParticipant = new Buckets(l.perParticipant);
  const sweeper = setInterval(() => {
    byIp.sweep();
    byParticipant.sweep();
  }, 10_000);
  sweeper.unref();
  app.addHook('onClose', async () => clearInterval(sweeper));
  // Before anything else of the request runs (authentication included).
  app.addHook('onRequest', async (req, reply) => {
    const wait = byIp.take(normaliseIp(req.socket.remoteAddress));
    if (wait > 0) return refuse(reply, wait, 'too many requests from this address');
    return undefined;
  });
  // After the route authenticated the caller, before the body is parsed or a key looked up.
  app.addHook('preParsing', async (req, reply) => {
    const p = principalOf(req);
    if (p === undefined) return undefined;
    const wait = byParticipant.take(`${p.contactId}\u0000${p.participantId}`);
    if (wait > 0) return refuse(reply, wait, 'too many key requests for this participant');
    return undefined;
  });
}

/**
 * Reads the open-files limit of this process from /proc/self/limits (Linux), raises the soft
 * limit to the hard one with `prlimit` when it is below `needed` (Node itself usually did so
 * at start), and returns one line to print on stderr when it is still below `needed`, else
 * null. Off Linux it returns null.
 */
export function checkOpenFiles(needed: number, who: string): string | null {
  const read = (): { soft: number; hard: number } | null => {
    try {
      const line = readFileSync('/proc/self/limits', 'utf8')
        .split('\n')
        .find((x) => x.startsWith('Max open files'));
      const m = line && /^Max open files\s+(\S+)\s+(\S+)/.exec(line);
      if (!m) return null;
      const n = (s: string | undefined): number => (s === 'unlimited' ? Infinity : Number(s));
      return { soft: n(m[1]), hard: n(m[2]) };
    } catch {
      return null;
    }
  };
  let lim = read();
  if (lim === null || lim.soft >= needed) return null;
  if (lim.hard > lim.soft) {
    try {
      const hard = Number.isFinite(lim.hard) ? String(lim.hard) : 'unlimited';
      spawnSync('prlimit', ['--pid', String(process.pid), `--nofile=${hard}:${hard}`], {
        stdio: 'ignore',
        timeout: 2000,
      });
    } catch {
      // no prlimit: report below
    }
    lim = read() ?? lim;
    if (lim.soft >= needed) return null;
  }
  return (
    `${who}: open-files limit ${lim.soft} (hard ${lim.hard}) is below the ${needed} the connection caps need; ` +
    'raise it (ulimit -n, systemd LimitNOFILE=) or lower the caps (docs/operations.md)'
  );
}
