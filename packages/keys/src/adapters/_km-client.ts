/**
 * The HTTP client of the External Key Manager API (docs/key-management.md "Client behaviour"),
 * shared by the wrap-model and key-store-model adapters: signed requests (HMAC-SHA256 or a
 * bearer token), optional mutual TLS, a timeout per attempt, bounded retries with exponential
 * backoff and full jitter, and a circuit breaker. Whatever goes wrong with the service (down,
 * slow, 5xx, garbage, refused) surfaces as LatchkeyError KEY_UNAVAILABLE whose `detail` (local
 * logs only) says why; NOT_FOUND and CONFLICT pass through; DECRYPT_FAILED becomes
 * AuthenticationError so the store can tell a wrong key from an outage.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import type { z } from 'zod';
import { AuthenticationError } from '@latchkey/crypto/aead';
import { LatchkeyError } from '@latchkey/protocol';
import { signKmRequest } from '../external-auth.ts';
import { KmErrorResponse } from '../external-api.ts';

export type KmAuth =
  | { type: 'hmac'; clientId: string; secret: Uint8Array }
  /** A short-lived signed token (audience = the key manager's URL, expiry of minutes, jti). */
  | { type: 'bearer'; token: () => string | Promise<string> };

export interface KmClientOptions {
  /** Base URL of the enterprise's key manager, e.g. `https://kms.example.com/latchkey`. */
  url: string;
  auth: KmAuth;
  /** Per attempt, default 2000 ms. */
  timeoutMs?: number;
  /** Retries after the first attempt, default 2. Only outages are retried, never a refusal. */
  retries?: number;
  /** First backoff, doubled per retry with full jitter (default 100 ms, at most maxBackoffMs). */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Consecutive failed attempts that open the circuit (default 5). */
  breakerThreshold?: number;
  /** How long an open circuit refuses calls before letting one probe through (default 10 s). */
  breakerCooldownMs?: number;
  /** TLS: trusted CA, and a client certificate and key for mutual TLS (PEM). */
  tls?: { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer };
  now?: () => number;
}

const MAX_RESPONSE_BYTES = 64 * 1024;

export type BreakerState = 'closed' | 'open' | 'half-open';

function keyUnavailable(message: string, detail: string, cause?: unknown): LatchkeyError {
  return new LatchkeyError('KEY_UNAVAILABLE', message, {
    detail,
    ...(cause === undefined ? {} : { cause }),
  });
}

/** An attempt that failed in a way worth retrying (outage, timeout, 5xx, garbage). */
class Transient extends Error {}

/** The request could not even be made (no token): says nothing about the service. */
class NotSent extends Error {
  constructor(readonly error: LatchkeyError) {
    super(error.message);
  }
}

export class KmClient {
  readonly #base: URL;
  readonly #auth: KmAuth;
  readonly #timeoutMs: number;
  readonly #retries: number;
  readonly #backoffMs: number;
  readonly #maxBackoffMs: number;
  readonly #threshold: number;
  readonly #cooldownMs: number;
  readonly #now: () => number;
  readonly #agent: http.Agent;
  readonly #tls: KmClientOptions['tls'];
  #failures = 0;
  #openUntil = 0;
  #probing = false;
  #closed = false;

  /** @throws TypeError for a URL that is not http(s); RangeError for a non-positive limit. */
  constructor(opts: KmClientOptions) {
    this.#base = new URL(opts.url);
    if (this.#base.protocol !== 'http:' && this.#base.protocol !== 'https:')
      throw new TypeError('key manager URL must be http(s)');
    this.#auth = opts.auth;
    this.#timeoutMs = opts.timeoutMs ?? 2000;
    this.#retries = opts.retries ?? 2;
    this.#backoffMs = opts.backoffMs ?? 100;
    this.#maxBackoffMs = opts.maxBackoffMs ?? 2000;
    this.#threshold = opts.breakerThreshold ?? 5;
    this.#cooldownMs = opts.breakerCooldownMs ?? 10_000;
    this.#now = opts.now ?? Date.now;
    this.#tls = opts.tls;
    for (const [name, v] of Object.entries({
      timeoutMs: this.#timeoutMs,
      threshold: this.#threshold,
    })) {
      if (!(v > 0)) throw new RangeError(`${name} must be positive`);
    }
    if (!Number.isInteger(this.#retries) || this.#retries < 0 || this.#retries > 10)
      throw new RangeError('retries must be 0-10');
    const agentOpts = { keepAlive: true, maxSockets: 64 };
    this.#agent =
      this.#base.protocol === 'https:' ? new https.Agent(agentOpts) : new http.Agent(agentOpts);
  }

  get breaker(): BreakerState {
    if (this.#openUntil === 0) return 'closed';
    return this.#now() < this.#openUntil ? 'open' : 'half-open';
  }

  /**
   * One API call: `body` JSON-encoded (none for GET and DELETE), the 2xx answer parsed with
   * `schema` (204 gives undefined).
   * @throws LatchkeyError KEY_UNAVAILABLE, NOT_FOUND, CONFLICT; AuthenticationError for
   *   DECRYPT_FAILED.
   */
  async call<T extends z.ZodType>(
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    body: unknown,
    schema: T | null,
  ): Promise<z.infer<T>> {
    if (this.#closed) throw keyUnavailable('key manager client is closed', 'closed');
    this.#admit();
    const payload =
      body === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(body), 'utf8');
    let last: unknown;
    for (let attempt = 0; attempt <= this.#retries; attempt++) {
      if (attempt > 0) {
        const cap = Math.min(this.#maxBackoffMs, this.#backoffMs * 2 ** (attempt - 1));
        await new Promise((r) => setTimeout(r, Math.random() * cap));
        if (this.#closed) break;
        // Another call may have opened the circuit meanwhile: stop hammering.
        if (this.breaker === 'open') break;
      }
      try {
        const res = await this.#attempt(method, path, payload);
        const out = this.#interpret(res, schema);
        this.#succeeded();
        return out;
      } catch (err) {
        if (err instanceof NotSent) {
          this.#probing = false;
          throw err.error;
        }
        if (!(err instanceof Transient)) {
          // The service answered: it is up, whatever it said.
          this.#succeeded();
          throw err;
        }
        last = err;
        this.#failed();
      }
    }
    this.#probing = false;
    const why = last instanceof Error ? last.message : 'unknown failure';
    throw keyUnavailable('external key manager unavailable', `${method} ${path}: ${why}`, last);
  }

  #admit(): void {
    const state = this.breaker;
    if (state === 'open') throw keyUnavailable('external key manager unavailable', 'circuit open');
    if (state === 'half-open') {
      if (this.#probing)
        throw keyUnavailable(
          'external key manager unavailable',
          'circuit half-open, probe in flight',
        );
      this.#probing = true;
    }
  }

  #succeeded(): void {
    this.#failures = 0;
    this.#openUntil = 0;
    this.#probing = false;
  }

  #failed(): void {
    this.#failures++;
    if (this.#probing || this.#failures >= this.#threshold) {
      this.#openUntil = this.#now() + this.#cooldownMs;
    }
  }

  #interpret<T extends z.ZodType>(
    res: { status: number; text: string },
    schema: T | null,
  ): z.infer<T> {
    let json: unknown;
    if (res.status >= 500 || res.status === 429 || res.status === 408)
      throw new Transient(`HTTP ${res.status}`);
    if (res.status === 204 && schema === null) return undefined as z.infer<T>;
    try {
      json = res.text === '' ? undefined : JSON.parse(res.text);
    } catch {
      throw new Transient(`HTTP ${res.status} with a body that is not JSON`);
    }
    if (res.status >= 200 && res.status < 300) {
      if (schema === null) return undefined as z.infer<T>;
      const parsed = schema.safeParse(json);
      if (!parsed.success) throw new Transient(`HTTP ${res.status} with a malformed body`);
      return parsed.data;
    }
    const err = KmErrorResponse.safeParse(json);
    if (!err.success) throw new Transient(`HTTP ${res.status} with a malformed error body`);
    const { code, message } = err.data.error;
    if (code === 'NOT_FOUND' || code === 'CONFLICT') {
      throw new LatchkeyError(
        code,
        code === 'NOT_FOUND' ? 'not found at the key manager' : 'conflict at the key manager',
        {
          detail: message,
        },
      );
    }
    if (code === 'DECRYPT_FAILED') throw new AuthenticationError();
    // FORBIDDEN (revoked, shredded, rate-limited), AUTH_* (our signature or clock), and the rest.
    throw keyUnavailable(
      'the external key manager refused the request',
      `HTTP ${res.status} ${code}: ${message}`,
    );
  }

  async #headers(method: string, path: string, body: Buffer): Promise<Record<string, string>> {
    // Signed with the real clock: the server checks it against its own.
    if (this.#auth.type === 'hmac')
      return signKmRequest({ method, path, body }, this.#auth, Date.now());
    return { authorization: `Bearer ${await this.#auth.token()}` };
  }

  async #attempt(
    method: string,
    path: string,
    body: Buffer,
  ): Promise<{ status: number; text: string }> {
    const fullPath = `${this.#base.pathname.replace(/\/$/, '')}${path}`;
    let headers: Record<string, string>;
    try {
      headers = await this.#headers(method, fullPath, body);
    } catch (err) {
      throw new NotSent(
        keyUnavailable(
          'cannot authenticate to the external key manager',
          err instanceof Error ? err.message : String(err),
          err,
        ),
      );
    }
    const url = new URL(fullPath, this.#base);
    return new Promise((resolve, reject) => {
      const mod = url.protocol === 'https:' ? https : http;
      const req = mod.request(
        url,
        {
          method,
          agent: this.#agent,
          headers: {
            ...headers,
            accept: 'application/json',
            ...(body.length > 0 ? { 'content-type': 'application/json' } : {}),
            'content-length': String(body.length),
          },
          ...(this.#tls ?? {}),
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > MAX_RESPONSE_BYTES) req.destroy(new Transient('response too large'));
            else chunks.push(c);
          });
          res.on('end', () => {
            clearTimeout(timer);
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
          });
          res.on('error', (e) => {
            clearTimeout(timer);
            reject(e instanceof Transient ? e : new Transient(e.message));
          });
        },
      );
      const timer = setTimeout(
        () => req.destroy(new Transient(`timeout after ${this.#timeoutMs} ms`)),
        this.#timeoutMs,
      );
      req.on('error', (e) => {
        clearTimeout(timer);
        reject(
          e instanceof Transient
            ? e
            : new Transient((e as NodeJS.ErrnoException).code ?? e.message),
        );
      });
      req.end(body);
    });
  }

  close(): void {
    this.#closed = true;
    this.#agent.destroy();
  }
}
