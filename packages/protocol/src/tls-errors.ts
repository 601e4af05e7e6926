/**
 * The one map from Node's TLS error codes (OpenSSL's verification codes, `ERR_TLS_*`,
 * `ERR_SSL_*`) to what went wrong, for every place that reports a failed TLS connection: the
 * client SDK (TLS_FAILED with a reason), webhook delivery (its TLS_* error codes). Each caller
 * words the kinds its own way.
 */

export type TlsFailureKind =
  'NAME_MISMATCH' | 'EXPIRED' | 'NOT_YET_VALID' | 'UNTRUSTED' | 'REVOKED' | 'NOT_TLS' | 'HANDSHAKE';

const TLS_CODES: Readonly<Record<string, TlsFailureKind>> = {
  ERR_TLS_CERT_ALTNAME_INVALID: 'NAME_MISMATCH',
  CERT_HAS_EXPIRED: 'EXPIRED',
  CERT_NOT_YET_VALID: 'NOT_YET_VALID',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'UNTRUSTED',
  SELF_SIGNED_CERT_IN_CHAIN: 'UNTRUSTED',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'UNTRUSTED',
  UNABLE_TO_GET_ISSUER_CERT: 'UNTRUSTED',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'UNTRUSTED',
  CERT_UNTRUSTED: 'UNTRUSTED',
  CERT_SIGNATURE_FAILURE: 'UNTRUSTED',
  CERT_REVOKED: 'REVOKED',
  ERR_SSL_WRONG_VERSION_NUMBER: 'NOT_TLS',
};

/**
 * What a TLS failure with Node error `code` was, or undefined when the code is not a TLS one.
 * Unknown `ERR_TLS_*`, `ERR_SSL_*` and certificate codes are a failed handshake.
 */
export function tlsFailureKind(code: string): TlsFailureKind | undefined {
  return (
    TLS_CODES[code] ??
    (code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL') || code.includes('CERT')
      ? 'HANDSHAKE'
      : undefined)
  );
}

/** The TLS failure in `err` or its causes (at most 4 deep): its Node code and kind. */
export function findTlsFailure(err: unknown): { code: string; kind: TlsFailureKind } | undefined {
  for (let e: unknown = err, depth = 0; e && typeof e === 'object' && depth < 4; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') {
      const kind = tlsFailureKind(code);
      if (kind !== undefined) return { code, kind };
    }
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}
