/**
 * The HTTP client of the External Key Manager API (docs/key-management.md "Client behaviour"),
 * shared by the wrap-model and key-store-model adapters: signed requests (HMAC-SHA256 or a
 * bearer token), optional mutual TLS, a timeout per attempt, bounded retries with exponential
 * backoff and full jitter, and a circuit breaker. Whatever goes wrong with the service (down,
 * slow, 5xx, garbage, refused) surfaces as LatchkeyError KEY_UNAVAILABLE whose message names the
 * kind of failure (unavailable, malformed answer, our signature refused (401), access refused
 * (403)) and whose `detail` (local logs only) says why; NOT_FOUND and CONFLICT pass through;
 * DECRYPT_FAILED becomes AuthenticationError so the store can tell a wrong key from an outage.
 *
 * Answers are parsed forward compatibly: unknown fields are ignored, known ones validated
 * strictly (@latchkey/protocol key-manager-api.ts). Every failure is kept as `lastError` (for
 * `/healthz`) and given to `onFailure` (for the log): the operation, HTTP status, error code and
 * reason, never a secret, key or body (km-failures.ts).
 */
import * as http from 'node:http';
import * as https from 'node:https';
import type { z } from 'zod';
import { AuthenticationError } from '@latchkey/crypto/aead';
import { LatchkeyError, backoffDelay } from '@latchkey/protocol';
import { signKmRequest } from '../external-auth.ts';
import { KmErrorResponse } from '@latchkey/protocol';
import {
  KIND_MESSAGE,
  NotSent,
  Refusal,
  Transient,
  keyUnavailable,
  kmOperation,
  type KmFailure,
} from './km-failures.ts';

export { kmOperation, type KmFailure, type KmFailureKind } from './km-failures.ts';

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
  /** Told of every failed attempt and refusal (not of NOT_FOUND or CONFLICT), for the log. */
  onFailure?: (failure: KmFailure) => void;
}

const MAX_RESPONSE_BYTES = 64 * 1024;

export type BreakerState = 'closed' | 'open' | 'half-open';

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
  readonly #onFailure: ((f: KmFailure) => void) | undefined;
  #lastError: KmFailure | undefined;
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
    this.#onFailure = opts.onFailure;
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

  /** The most recent failure (kept after a recovery; `at` says when), for `/healthz`. */
  get lastError(): KmFailure | undefined {
    return this.#lastError;
  }

  #record(failure: KmFailure): void {
    this.#lastError = failure;
    try {
      this.#onFailure?.(failure);
    } catch {
      // A broken log must not turn into a key-manager failure.
    }
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
    const op = kmOperation(method, path);
    this.#admit();
    const payload =
      body === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(body), 'utf8');
    let last: unknown;
    for (let attempt = 0; attempt <= this.#retries; attempt++) {
      if (attempt > 0) {
        const wait = backoffDelay(attempt - 1, {
          baseMs: this.#backoffMs,
          maxMs: this.#maxBackoffMs,
          jitter: 'full',
        });
        await new Promise((r) => setTimeout(r, wait));
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
          if (err instanceof Refusal) {
            this.#record({ ...err.failure, at: this.#now(), op, retrying: false });
            throw new LatchkeyError('KEY_UNAVAILABLE', err.message, {
              detail: `${op}: ${err.failure.reason}`,
            });
          }
          if (err instanceof AuthenticationError) {
            this.#record({
              at: this.#now(),
              op,
              status: 422,
              code: 'DECRYPT_FAILED',
              kind: 'decrypt-failed',
              reason: 'HTTP 422 DECRYPT_FAILED: the wrapped key does not authenticate',
              retrying: false,
            });
          }
          throw err;
        }
        last = err;
        this.#failed();
        const retrying =
          attempt < this.#retries && !this.#closed && (this.breaker as BreakerState) !== 'open';
        this.#record({
          at: this.#now(),
          op,
          ...(err.status === undefined ? {} : { status: err.status }),
          kind: err.kind,
          reason: err.message,
          retrying,
        });
      }
    }
    this.#probing = false;
    const why = last instanceof Error ? last.message : 'unknown failure';
    const kind = last instanceof Transient ? last.kind : 'unavailable';
    throw keyUnavailable(KIND_MESSAGE[kind], `${op}: ${why}`, last);
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
    const { status } = res;
    if (status >= 500 || status === 429 || status === 408)
      throw new Transient(`HTTP ${status}`, status);
    if (status === 204 && schema === null) return undefined as z.infer<T>;
    let notJson = false;
    try {
      json = res.text === '' ? undefined : JSON.parse(res.text);
    } catch {
      notJson = true;
    }
    if (status >= 200 && status < 300) {
      if (notJson)
        throw new Transient(`HTTP ${status} with a body that is not JSON`, status, 'malformed');
      if (schema === null) return undefined as z.infer<T>;
      const parsed = schema.safeParse(json);
      if (!parsed.success) {
        // Field names only: the values may be keys.
        const fields = [
          ...new Set(parsed.error.issues.map((i) => i.path.join('.') || '(the answer)')),
        ];
        throw new Transient(
          `HTTP ${status} with a malformed body (invalid fields: ${fields.join(', ')})`,
          status,
          'malformed',
        );
      }
      return parsed.data;
    }
    const err = notJson ? undefined : KmErrorResponse.safeParse(json);
    const code = err?.success === true ? err.data.error.code : undefined;
    const said = err?.success === true ? ` (the key manager says: ${err.data.error.message})` : '';
    const head = `HTTP ${status}${code === undefined ? '' : ` ${code}`}`;
    // 401 and 403 are told apart by status even behind a proxy that replaces the body.
    if (status === 401 || code === 'AUTH_INVALID' || code === 'AUTH_REQUIRED') {
      const kind = code === 'AUTH_EXPIRED' ? 'clock-refused' : 'signature-refused';
      const why =
        kind === 'clock-refused'
          ? 'our request timestamp was refused: check the clocks of both hosts'
          : 'our request signature was refused: check the client id and the shared secret';
      throw new Refusal(
        { status, ...(code === undefined ? {} : { code }), kind, reason: `${head}: ${why}${said}` },
        KIND_MESSAGE[kind],
      );
    }
    if (status === 403 || code === 'FORBIDDEN') {
      throw new Refusal(
        {
          status,
          ...(code === undefined ? {} : { code }),
          kind: 'access-refused',
          reason: `${head}: access refused by the key manager's policy (revoked, shredded, rate-limited or not granted to this client)${said}`,
        },
        KIND_MESSAGE['access-refused'],
      );
    }
    if (code === undefined)
      throw new Transient(`${head} with a malformed error answer`, status, 'malformed');
    if (code === 'NOT_FOUND' || code === 'CONFLICT') {
      throw new LatchkeyError(
        code,
        code === 'NOT_FOUND' ? 'not found at the key manager' : 'conflict at the key manager',
        { detail: err?.success === true ? err.data.error.message : '' },
      );
    }
    if (code === 'DECRYPT_FAILED') throw new AuthenticationError();
    throw new Refusal(
      { status, code, kind: 'refused', reason: `${head}: the request was refused${said}` },
      `${KIND_MESSAGE.refused} (${status} ${code})`,
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
