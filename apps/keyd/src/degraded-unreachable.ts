/**
 * Which key-manager failures mean "unreachable" for degraded mode (degraded-cache.ts;
 * docs/key-management.md "Degraded mode"): only those let cached keys be served. Anything the
 * key manager answered (a refusal, NOT_FOUND, CONFLICT, a key that does not authenticate) is
 * not, nor is a closed key manager. Also how such a failure reaches the caller (always
 * KEY_UNAVAILABLE) and the short code `/healthz` and the log line show for it.
 */
import { AuthenticationError } from '@latchkey/crypto/aead';
import { KmipResultError } from '@latchkey/keys';
import { LatchkeyError } from '@latchkey/protocol';

/** Error codes of sockets and connections that never reached an answer. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
]);

function causes(err: unknown): unknown[] {
  const out: unknown[] = [];
  let e: unknown = err;
  while (e instanceof Error && out.length < 8) {
    out.push(e);
    e = e.cause;
  }
  return out;
}

/**
 * Whether a key-manager failure means it could not be reached (so cached keys may be served):
 * KEY_UNAVAILABLE or UNAVAILABLE, and network errors that never got an answer. Not: anything the
 * key manager answered (NOT_FOUND, CONFLICT, a refusal, whose messages all say "refused":
 * signature or timestamp (401), access or policy (403, a revoked or shredded contact), other 4xx
 * (packages/keys/src/wrappers/km-failures.ts); a KMIP server's failed result), a key that does
 * not authenticate (wrong key, tampering), or a closed key manager.
 */
export function isKeyManagerUnreachable(err: unknown): boolean {
  if (LatchkeyError.is(err)) {
    if (err.code !== 'KEY_UNAVAILABLE' && err.code !== 'UNAVAILABLE') return false;
    if (err instanceof KmipResultError) return false;
    if (/\brefused\b/i.test(err.message) || /\bclosed\b/i.test(err.message)) return false;
    return !causes(err).some((c) => c instanceof AuthenticationError);
  }
  if (err instanceof AuthenticationError) return false;
  return causes(err).some((c) => {
    const code = (c as { code?: unknown }).code;
    return typeof code === 'string' && NETWORK_CODES.has(code);
  });
}

/** The key manager's own KEY_UNAVAILABLE, or anything else unreachable as KEY_UNAVAILABLE. */
export function asUnavailable(err: unknown): LatchkeyError {
  if (LatchkeyError.is(err, 'KEY_UNAVAILABLE')) return err;
  if (LatchkeyError.is(err))
    return new LatchkeyError('KEY_UNAVAILABLE', err.message, {
      cause: err,
      ...(err.detail === undefined ? {} : { detail: err.detail }),
    });
  return new LatchkeyError('KEY_UNAVAILABLE', 'key manager unavailable', {
    cause: err,
    detail: err instanceof Error ? err.message : String(err),
  });
}

/** The error code of a failure: the LatchkeyError code, else the first errno-style code. */
export function errorCode(err: unknown): string {
  if (LatchkeyError.is(err)) return err.code;
  for (const c of causes(err)) {
    const code = (c as { code?: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return 'UNAVAILABLE';
}
