/**
 * TLS verification failures (Node's OpenSSL error codes, as carried by fetch's `cause` and by
 * ws's error event, classified by @latchkey/protocol's one map) as a clear TLS_FAILED error.
 * Browsers do not expose the reason; there the connection simply fails.
 */
import { LatchkeyError, findTlsFailure, type TlsFailureKind } from '@latchkey/protocol';

const REASONS: Readonly<Record<TlsFailureKind, string>> = {
  NAME_MISMATCH: 'certificate does not name this host',
  EXPIRED: 'certificate has expired',
  NOT_YET_VALID: 'certificate is not yet valid',
  UNTRUSTED: 'certificate chain is not trusted',
  REVOKED: 'certificate is revoked',
  NOT_TLS: 'server did not answer with TLS',
  HANDSHAKE: 'TLS handshake failed',
};

/** A TLS_FAILED error for `err` (or its causes), or null when it is not a TLS failure. */
export function tlsFailure(err: unknown, what: string): LatchkeyError | null {
  const f = findTlsFailure(err);
  if (f === undefined) return null;
  return new LatchkeyError('TLS_FAILED', `${what}: ${REASONS[f.kind]}`, { detail: f.code });
}
