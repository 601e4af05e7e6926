/**
 * Request authentication of the External Key Manager API (docs/key-management.md
 * "Authentication"): HMAC-SHA256 (RFC 2104) under a secret shared by the key service and the
 * enterprise's key manager, over the method, the path with its query, a timestamp, a unique
 * nonce, the client id and the SHA-256 of the body. The server compares in constant time,
 * refuses a timestamp outside its window and a nonce it has already seen inside it, so a
 * captured request cannot be replayed.
 */
import { toBase64Url, utf8Encode } from '@latchkey/crypto/codec';
import { constantTimeEqual } from '@latchkey/crypto/compare';
import { hmacSha256, sha256 } from '@latchkey/crypto/mac';
import { randomBytes } from '@latchkey/crypto/random';

export const KM_AUTH_HEADERS = {
  client: 'x-latchkey-client',
  timestamp: 'x-latchkey-timestamp',
  nonce: 'x-latchkey-nonce',
  signature: 'x-latchkey-signature',
} as const;

/** Domain of the signed string; a new scheme gets a new label. */
const DOMAIN = 'latchkey.km.v1';
/** Default accepted clock difference either way. */
export const KM_AUTH_WINDOW_MS = 5 * 60_000;
const NONCE_RE = /^[A-Za-z0-9_-]{16,64}$/;
const CLIENT_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const SIG_RE = /^v1=([A-Za-z0-9_-]{43})$/;

export interface SignedRequest {
  method: string;
  /** Path and query exactly as sent, e.g. `/v1/keys/k1/wrap`. */
  path: string;
  /** The body bytes exactly as sent (empty for GET and DELETE). */
  body: Uint8Array;
}

function signingInput(
  r: SignedRequest,
  clientId: string,
  timestamp: string,
  nonce: string,
): Uint8Array {
  const head = [
    DOMAIN,
    r.method.toUpperCase(),
    r.path,
    timestamp,
    nonce,
    clientId,
    toBase64Url(sha256(r.body)),
  ].join('\n');
  return utf8Encode(head);
}

/**
 * The headers that authenticate one request.
 * @throws RangeError when the client id is malformed or the secret shorter than 32 bytes.
 */
export function signKmRequest(
  r: SignedRequest,
  auth: { clientId: string; secret: Uint8Array },
  now: number = Date.now(),
): Record<string, string> {
  if (!CLIENT_RE.test(auth.clientId))
    throw new RangeError('clientId must be 1-64 of [A-Za-z0-9_.-]');
  if (auth.secret.length < 32) throw new RangeError('HMAC secret must be at least 32 bytes');
  const timestamp = String(Math.floor(now));
  const nonce = toBase64Url(randomBytes(16));
  const mac = hmacSha256(auth.secret, signingInput(r, auth.clientId, timestamp, nonce));
  return {
    [KM_AUTH_HEADERS.client]: auth.clientId,
    [KM_AUTH_HEADERS.timestamp]: timestamp,
    [KM_AUTH_HEADERS.nonce]: nonce,
    [KM_AUTH_HEADERS.signature]: `v1=${toBase64Url(mac)}`,
  };
}

export type KmAuthResult =
  | { ok: true; clientId: string }
  | { ok: false; code: 'AUTH_REQUIRED' | 'AUTH_INVALID' | 'AUTH_EXPIRED'; reason: string };

export interface KmRequestVerifierOptions {
  /** The secret of each client id. */
  secrets: ReadonlyMap<string, Uint8Array>;
  /** Accepted clock difference either way (default 5 minutes). */
  windowMs?: number;
  now?: () => number;
  /**
   * Records a nonce until `expiresAt` and says whether it was new. Default: an in-memory set,
   * pruned as it goes; a server with several processes passes a shared store.
   */
  rememberNonce?: (nonce: string, expiresAt: number) => boolean;
}

/** An in-memory nonce memory for one process. */
export function memoryNonceStore(
  now: () => number = Date.now,
): (nonce: string, expiresAt: number) => boolean {
  const seen = new Map<string, number>();
  return (nonce, expiresAt) => {
    const t = now();
    if (seen.size > 1024) for (const [n, exp] of seen) if (exp <= t) seen.delete(n);
    const prev = seen.get(nonce);
    if (prev !== undefined && prev > t) return false;
    seen.set(nonce, expiresAt);
    return true;
  };
}

/** Server side: checks the signature headers of a request. */
export function createKmRequestVerifier(
  opts: KmRequestVerifierOptions,
): (
  r: SignedRequest,
  headers: Readonly<Record<string, string | string[] | undefined>>,
) => KmAuthResult {
  const windowMs = opts.windowMs ?? KM_AUTH_WINDOW_MS;
  const now = opts.now ?? Date.now;
  const remember = opts.rememberNonce ?? memoryNonceStore(now);
  const one = (h: string | string[] | undefined): string | undefined =>
    typeof h === 'string' ? h : undefined;
  return (r, headers) => {
    const clientId = one(headers[KM_AUTH_HEADERS.client]);
    const timestamp = one(headers[KM_AUTH_HEADERS.timestamp]);
    const nonce = one(headers[KM_AUTH_HEADERS.nonce]);
    const signature = one(headers[KM_AUTH_HEADERS.signature]);
    if (
      clientId === undefined ||
      timestamp === undefined ||
      nonce === undefined ||
      signature === undefined
    ) {
      return { ok: false, code: 'AUTH_REQUIRED', reason: 'missing signature headers' };
    }
    const sig = SIG_RE.exec(signature);
    if (
      !CLIENT_RE.test(clientId) ||
      !NONCE_RE.test(nonce) ||
      !/^\d{1,16}$/.test(timestamp) ||
      sig === null
    ) {
      return { ok: false, code: 'AUTH_INVALID', reason: 'malformed signature headers' };
    }
    const secret = opts.secrets.get(clientId);
    // Compute a MAC even for an unknown client so the answer takes the same time.
    const key = secret ?? new Uint8Array(32);
    const expected = toBase64Url(hmacSha256(key, signingInput(r, clientId, timestamp, nonce)));
    const good = constantTimeEqual(utf8Encode(expected), utf8Encode(sig[1] ?? ''));
    if (!good || secret === undefined)
      return { ok: false, code: 'AUTH_INVALID', reason: 'bad signature' };
    const t = now();
    const ts = Number(timestamp);
    if (Math.abs(t - ts) > windowMs)
      return { ok: false, code: 'AUTH_EXPIRED', reason: 'timestamp outside the window' };
    // Remember the nonce past the far edge of the window, so no replay is accepted inside it.
    if (!remember(`${clientId}:${nonce}`, ts + windowMs + 1)) {
      return { ok: false, code: 'AUTH_INVALID', reason: 'replayed request' };
    }
    return { ok: true, clientId };
  };
}
