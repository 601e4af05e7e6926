/**
 * Admission control in front of the WebSocket handshake and the frame loop: the browser
 * origin allowlist (RFC 6454 origins, compared exactly), an IP/CIDR allowlist (node:net
 * BlockList), a cap on connections per client IP, and a token bucket per client IP shared by
 * all of that IP's connections, so that one host cannot crowd out the others.
 */
import type { BlockList } from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { ErrorCode } from '@latchkey/protocol';
import { ipAllowed, normaliseIp, parseIpAllowlist } from '@latchkey/tokens';
import { TokenBucket, type RateLimitOptions } from './limiter.ts';

export interface AdmissionOptions {
  /**
   * Browser origins allowed to open a WebSocket (e.g. `https://chat.example.com`). Requests
   * without an Origin header (non-browser clients) are not affected. Undefined: any origin.
   */
  allowedOrigins?: readonly string[];
  /** IPs and CIDR ranges allowed to connect (e.g. `10.0.0.0/8`, `::1`). Undefined: any. */
  ipAllowlist?: readonly string[];
  /** Open connections allowed per client IP (default 500). */
  maxConnectionsPerIp?: number;
  /** Frames per second shared by all connections of one IP (default 2,000/s, burst 4,000). */
  perIpRateLimit?: RateLimitOptions;
  /**
   * New connections (WebSocket handshakes) per second from one IP (default 20/s, burst 100), so
   * that a client cut off for abuse cannot make the relay pay for a reconnect storm.
   */
  perIpConnectRate?: RateLimitOptions;
}

export interface Rejection {
  status: number;
  code: ErrorCode;
  message: string;
}

export const DEFAULT_MAX_CONNECTIONS_PER_IP = 500;
export const DEFAULT_PER_IP_RATE_LIMIT: RateLimitOptions = { perSecond: 2000, burst: 4000 };
export const DEFAULT_PER_IP_CONNECT_RATE: RateLimitOptions = { perSecond: 20, burst: 100 };

/** The peer's IP, with IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) reduced to IPv4. */
export function clientIp(req: IncomingMessage): string {
  return normaliseIp(req.socket.remoteAddress);
}

/** Normalises an origin for comparison (scheme and host lower case, no trailing slash). */
function normaliseOrigin(origin: string): string {
  try {
    return new URL(origin).origin;
  } catch {
    return origin.trim().toLowerCase();
  }
}

interface PerIp {
  connections: number;
  bucket: TokenBucket;
}

export class Admission {
  readonly #origins: ReadonlySet<string> | undefined;
  readonly #ips: BlockList | undefined;
  readonly #maxPerIp: number;
  readonly #rate: RateLimitOptions;
  readonly #byIp = new Map<string, PerIp>();
  readonly #connectRate: RateLimitOptions;
  /** Handshake buckets per IP; outlive the IP's connections until full again. */
  readonly #connects = new Map<string, TokenBucket>();

  /** @throws RangeError on a bad allowlist entry or limit. */
  constructor(opts: AdmissionOptions = {}) {
    this.#origins = opts.allowedOrigins
      ? new Set(opts.allowedOrigins.map(normaliseOrigin))
      : undefined;
    this.#ips = opts.ipAllowlist ? parseIpAllowlist(opts.ipAllowlist) : undefined;
    this.#maxPerIp = opts.maxConnectionsPerIp ?? DEFAULT_MAX_CONNECTIONS_PER_IP;
    if (!Number.isSafeInteger(this.#maxPerIp) || this.#maxPerIp < 1) {
      throw new RangeError('maxConnectionsPerIp must be a positive integer');
    }
    this.#rate = opts.perIpRateLimit ?? DEFAULT_PER_IP_RATE_LIMIT;
    new TokenBucket(this.#rate); // validates early
    this.#connectRate = opts.perIpConnectRate ?? DEFAULT_PER_IP_CONNECT_RATE;
    new TokenBucket(this.#connectRate);
  }

  /**
   * Decides on a WebSocket upgrade request and, when admitted, counts the connection
   * (call `release` when it closes).
   */
  admit(req: IncomingMessage, ip: string): Rejection | null {
    if (this.#ips && !ipAllowed(this.#ips, ip)) {
      return { status: 403, code: 'FORBIDDEN', message: 'address not allowed' };
    }
    const origin = req.headers.origin;
    if (this.#origins && origin !== undefined && !this.#origins.has(normaliseOrigin(origin))) {
      return { status: 403, code: 'FORBIDDEN', message: 'origin not allowed' };
    }
    let connects = this.#connects.get(ip);
    if (!connects) {
      if (this.#connects.size >= 10_000) {
        for (const [k, b] of this.#connects)
          if (b.waitMs(this.#connectRate.burst) === 0) this.#connects.delete(k);
      }
      this.#connects.set(ip, (connects = new TokenBucket(this.#connectRate)));
    }
    if (!connects.take()) {
      return {
        status: 429,
        code: 'RATE_LIMITED',
        message: 'too many new connections from this address',
      };
    }
    let entry = this.#byIp.get(ip);
    if (!entry) {
      entry = { connections: 0, bucket: new TokenBucket(this.#rate) };
      this.#byIp.set(ip, entry);
    }
    if (entry.connections >= this.#maxPerIp) {
      return {
        status: 429,
        code: 'RATE_LIMITED',
        message: 'too many connections from this address',
      };
    }
    entry.connections++;
    return null;
  }

  /** Forgets one connection of `ip`. */
  release(ip: string): void {
    const entry = this.#byIp.get(ip);
    if (!entry) return;
    entry.connections--;
    if (entry.connections <= 0) this.#byIp.delete(ip);
  }

  /** Takes one frame from the IP's shared bucket; false when that IP is over its rate. */
  takeFrame(ip: string): boolean {
    const entry = this.#byIp.get(ip);
    return entry ? entry.bucket.take() : true;
  }
}

/** Answers a refused upgrade with a small JSON error and closes the socket. */
export function refuseUpgrade(
  socket: { write(s: string): unknown; destroy(): void },
  r: Rejection,
): void {
  const body = JSON.stringify({ error: { code: r.code, message: r.message } });
  const reason = r.status === 429 ? 'Too Many Requests' : 'Forbidden';
  try {
    socket.write(
      `HTTP/1.1 ${r.status} ${reason}\r\nConnection: close\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  } finally {
    socket.destroy();
  }
}
