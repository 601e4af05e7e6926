/**
 * What every file route shares: JSON answers and `{ error: { code, message } }` errors with
 * the status ERROR_CODES gives (http-json.ts `send`, as the admin API answers), the bearer
 * token read from `Authorization` and verified as the WebSocket `auth` frame's is, and rate
 * buckets per participant and per client IP.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  AUDIENCE_RELAY,
  ERROR_CODES,
  LatchkeyError,
  UPLOAD_OFFSET_HEADER,
  type ErrorResponse,
  type Principal,
  type UploadState,
} from '@latchkey/protocol';
import type { TokenVerifier } from '@latchkey/tokens';
import { send } from '../http-json.ts';
import { TokenBucket, type RateLimitOptions } from '../limiter.ts';
import type { BlobRow } from './meta.ts';

/** Writes a LatchkeyError as the API's JSON error. */
export function sendError(
  res: ServerResponse,
  err: LatchkeyError,
  headers: Record<string, string> = {},
): void {
  const status = ERROR_CODES[err.code].http;
  const body: ErrorResponse = { error: { code: err.code, message: err.message.slice(0, 200) } };
  send(res, status, body, {
    ...(status === 401 ? { 'www-authenticate': 'Bearer realm="latchkey-files"' } : {}),
    ...headers,
  });
}

/** The wire form of an upload's state. */
export function uploadState(b: BlobRow): UploadState {
  return {
    blob: b.blob,
    contactId: b.contactId,
    size: b.size,
    offset: b.received,
    complete: b.complete,
  };
}

/** Answers an upload's state (200, or 409 for an offset conflict) with its offset header. */
export function sendState(
  res: ServerResponse,
  status: 200 | 201 | 409,
  b: BlobRow,
  headers: Record<string, string> = {},
): void {
  send(res, status, uploadState(b), { [UPLOAD_OFFSET_HEADER]: String(b.received), ...headers });
}

const BEARER = /^Bearer ([A-Za-z0-9._~+/=-]{1,8192})$/;

/**
 * The principal of `Authorization: Bearer <participant token>`, verified exactly as the
 * WebSocket `auth` frame's token (audience relay, signature, expiry with the same skew).
 * @throws LatchkeyError AUTH_REQUIRED, AUTH_INVALID, AUTH_EXPIRED.
 */
export async function bearer(req: IncomingMessage, verifier: TokenVerifier): Promise<Principal> {
  const h = req.headers.authorization;
  if (h === undefined) throw new LatchkeyError('AUTH_REQUIRED', 'bearer token required');
  const m = BEARER.exec(h);
  if (!m?.[1]) throw new LatchkeyError('AUTH_INVALID', 'malformed authorization');
  return verifier.verify(m[1], { audience: AUDIENCE_RELAY });
}

/** Token buckets by key (a participant, an IP), forgetting full ones when there are many. */
export class Buckets {
  readonly #opts: RateLimitOptions;
  readonly #map = new Map<string, TokenBucket>();

  /** @throws RangeError on a bad rate. */
  constructor(opts: RateLimitOptions) {
    new TokenBucket(opts);
    this.#opts = opts;
  }

  /** @throws LatchkeyError RATE_LIMITED when `key` is over its rate. */
  take(key: string): void {
    let b = this.#map.get(key);
    if (!b) {
      if (this.#map.size >= 10_000) {
        for (const [k, v] of this.#map) if (v.waitMs(this.#opts.burst) === 0) this.#map.delete(k);
      }
      this.#map.set(key, (b = new TokenBucket(this.#opts)));
    }
    if (!b.take()) throw new LatchkeyError('RATE_LIMITED', 'too many file requests');
  }
}
