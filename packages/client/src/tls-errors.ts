/**
 * Recognises TLS verification failures (Node's OpenSSL error codes, as carried by fetch's
 * `cause` and by ws's error event) and turns them into a clear TLS_FAILED error. Browsers do
 * not expose the reason; there the connection simply fails.
 */
import { LatchkeyError } from '@latchkey/protocol';

const REASONS: Record<string, string> = {
  ERR_TLS_CERT_ALTNAME_INVALID: 'certificate does not name this host',
  CERT_HAS_EXPIRED: 'certificate has expired',
  CERT_NOT_YET_VALID: 'certificate is not yet valid',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'certificate is self-signed and not trusted',
  SELF_SIGNED_CERT_IN_CHAIN: 'certificate chain ends in an untrusted root',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'certificate chain is not trusted',
  UNABLE_TO_GET_ISSUER_CERT: 'certificate issuer is unknown',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'certificate issuer is not trusted',
  CERT_REVOKED: 'certificate is revoked',
  ERR_SSL_WRONG_VERSION_NUMBER: 'server did not answer with TLS',
};

/** A TLS_FAILED error for `err` (or its causes), or null when it is not a TLS failure. */
export function tlsFailure(err: unknown, what: string): LatchkeyError | null {
  for (let e: unknown = err, depth = 0; e && typeof e === 'object' && depth < 4; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') {
      const reason =
        REASONS[code] ??
        (code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_')
          ? 'TLS handshake failed'
          : undefined);
      if (reason) return new LatchkeyError('TLS_FAILED', `${what}: ${reason}`, { detail: code });
    }
    e = (e as { cause?: unknown }).cause;
  }
  return null;
}
