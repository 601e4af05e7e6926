/**
 * Participant tokens (JWT, RFC 7519) minted by the enterprise's backend and verified by the
 * relay and the key service. Two modes:
 *   - HS256 with the API secret (the dev default): whoever verifies could also mint;
 *   - EdDSA (Ed25519, RFC 8037): the backend signs with its private key, relay and key service
 *     hold only the public key, so neither can mint a token.
 * The claim set is closed (see TokenClaims): unknown claims make a token invalid. Times are
 * checked against the verifier's own clock with one tolerance, TOKEN_CLOCK_SKEW_SECONDS (30 s),
 * for `exp`, `nbf` and `iat` alike: a token is refused once expired, before its `nbf`, and when
 * issued in the future. A token lives at most MAX_TOKEN_TTL_SECONDS (24 h), counted both from its
 * `iat` and from the verifier's now, so a token minted with a future `iat` cannot live longer.
 * Checked at mint and at verify time.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, KeyObject } from 'node:crypto';
import { SignJWT, jwtVerify, errors as joseErrors, type JWTHeaderParameters } from 'jose';
import {
  AUDIENCE_KEYS,
  AUDIENCE_RELAY,
  LatchkeyError,
  MAX_TOKEN_TTL_SECONDS,
  TOKEN_ISSUER,
  TokenClaims,
  type Principal,
  type Role,
  type TokenAlgorithm,
} from '@latchkey/protocol';

/** What signs tokens: the HS256 API secret (bytes) or an Ed25519 private key. */
export type TokenSigningKey = Uint8Array | KeyObject;

export interface MintOptions {
  contactId: string;
  participantId: string;
  role: Role;
  /**
   * Lifetime in seconds, counted from `notBefore` when given, else from `now`. The token expires
   * at most MAX_TOKEN_TTL_SECONDS after `now` (its `iat`): `notBefore - now + ttlSeconds` may not
   * exceed it.
   */
  ttlSeconds: number;
  /** Unix seconds; defaults to now. */
  now?: number;
  /** Unix seconds before which the token is not valid (`nbf`); at least `now`. */
  notBefore?: number;
}

/**
 * The clock skew tolerated between the minting backend and a verifier, in seconds: the same for
 * `exp` (accepted until `exp + 30`), `nbf` (from `nbf - 30`) and `iat` (up to `now + 30`). A
 * verifier may be configured stricter, never looser.
 */
export const TOKEN_CLOCK_SKEW_SECONDS = 30;

const MIN_SECRET_BYTES = 32;
const MAX_TOKEN_CHARS = 4096;

function checkSecret(secret: Uint8Array): void {
  if (!(secret instanceof Uint8Array) || secret.length < MIN_SECRET_BYTES) {
    throw new RangeError(`API secret must be at least ${MIN_SECRET_BYTES} bytes`);
  }
}

function checkTolerance(seconds: number | undefined): number {
  if (seconds === undefined) return TOKEN_CLOCK_SKEW_SECONDS;
  if (!Number.isInteger(seconds) || seconds < 0 || seconds > TOKEN_CLOCK_SKEW_SECONDS) {
    throw new RangeError(`clock tolerance must be 0..${TOKEN_CLOCK_SKEW_SECONDS} seconds`);
  }
  return seconds;
}

function checkEd25519(key: KeyObject, type: 'private' | 'public'): void {
  if (!(key instanceof KeyObject) || key.type !== type || key.asymmetricKeyType !== 'ed25519') {
    throw new TypeError(`expected an Ed25519 ${type} key`);
  }
}

function randomId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Buffer.from(bytes).toString('base64url');
}

/**
 * Imports the Ed25519 private key that signs tokens: PEM (PKCS#8) or a JWK (`{kty:"OKP",crv:"Ed25519",d,x}`).
 * @throws TypeError when it is not an Ed25519 private key.
 */
export function importTokenSigningKey(key: string | Record<string, unknown>): KeyObject {
  let k: KeyObject;
  try {
    k = typeof key === 'string' ? createPrivateKey(key) : createPrivateKey({ key, format: 'jwk' });
  } catch {
    throw new TypeError('expected an Ed25519 private key (PKCS#8 PEM or JWK)');
  }
  checkEd25519(k, 'private');
  return k;
}

/**
 * Imports the Ed25519 public key that verifies tokens: PEM (SPKI) or a JWK (`{kty:"OKP",crv:"Ed25519",x}`).
 * @throws TypeError when it is not an Ed25519 public key.
 */
export function importTokenVerifyKey(key: string | Record<string, unknown>): KeyObject {
  let k: KeyObject;
  try {
    k = typeof key === 'string' ? createPublicKey(key) : createPublicKey({ key, format: 'jwk' });
  } catch {
    throw new TypeError('expected an Ed25519 public key (SPKI PEM or JWK)');
  }
  checkEd25519(k, 'public');
  return k;
}

/** A fresh Ed25519 key pair for EdDSA tokens (the backend keeps the private half). */
export function generateTokenKeyPair(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('ed25519');
}

/**
 * Mints a participant token: HS256 when `key` is the API secret, EdDSA when it is an Ed25519
 * private key.
 * @throws LatchkeyError BAD_REQUEST on an invalid id, role, lifetime or not-before time.
 * @throws RangeError for a secret under 32 bytes; TypeError for a key that is not Ed25519 private.
 */
export async function mintToken(key: TokenSigningKey, opts: MintOptions): Promise<string> {
  let alg: TokenAlgorithm;
  if (key instanceof Uint8Array) {
    checkSecret(key);
    alg = 'HS256';
  } else {
    checkEd25519(key, 'private');
    alg = 'EdDSA';
  }
  if (
    !Number.isInteger(opts.ttlSeconds) ||
    opts.ttlSeconds < 1 ||
    opts.ttlSeconds > MAX_TOKEN_TTL_SECONDS
  ) {
    throw new LatchkeyError('BAD_REQUEST', `ttl must be 1..${MAX_TOKEN_TTL_SECONDS} seconds`);
  }
  const iat = opts.now ?? Math.floor(Date.now() / 1000);
  const nbf = opts.notBefore;
  const exp = (nbf ?? iat) + opts.ttlSeconds;
  if (
    nbf !== undefined &&
    (!Number.isInteger(nbf) || nbf < iat || exp - iat > MAX_TOKEN_TTL_SECONDS)
  ) {
    throw new LatchkeyError(
      'BAD_REQUEST',
      'notBefore must be at least now, and notBefore + ttl at most now + the maximum lifetime',
    );
  }
  const claims = {
    iss: TOKEN_ISSUER,
    aud: [AUDIENCE_RELAY, AUDIENCE_KEYS],
    sub: opts.participantId,
    cid: opts.contactId,
    role: opts.role,
    iat,
    ...(nbf === undefined ? {} : { nbf }),
    exp,
    jti: randomId(),
  };
  const parsed = TokenClaims.safeParse(claims);
  if (!parsed.success)
    throw new LatchkeyError('BAD_REQUEST', 'invalid token claims', {
      detail: parsed.error.message,
    });
  const jwt = new SignJWT({ cid: claims.cid, role: claims.role })
    .setProtectedHeader({ alg, typ: 'JWT' })
    .setIssuer(claims.iss)
    .setAudience(claims.aud)
    .setSubject(claims.sub)
    .setIssuedAt(claims.iat)
    .setExpirationTime(claims.exp)
    .setJti(claims.jti);
  if (nbf !== undefined) jwt.setNotBefore(nbf);
  return jwt.sign(key);
}

export interface VerifyOptions {
  /** Which service verifies: the token's audience must name it. */
  audience: typeof AUDIENCE_RELAY | typeof AUDIENCE_KEYS;
  /** Unix seconds; defaults to now. */
  now?: number;
  /** Allowed clock skew in seconds, 0..TOKEN_CLOCK_SKEW_SECONDS (default: the verifier's). */
  clockToleranceSeconds?: number;
}

export interface TokenVerifierOptions {
  /** HS256 API secret (at least 32 bytes): accepts HS256 tokens. */
  hs256Secret?: Uint8Array;
  /** Ed25519 public key (KeyObject, SPKI PEM or JWK): accepts EdDSA tokens. */
  ed25519PublicKey?: KeyObject | string | Record<string, unknown>;
  /** Allowed clock skew in seconds, 0..TOKEN_CLOCK_SKEW_SECONDS (default: that, 30). */
  clockToleranceSeconds?: number;
}

/** Verifies participant tokens with the keys it was configured with once. */
export interface TokenVerifier {
  /** Algorithms this verifier accepts. */
  readonly algorithms: readonly TokenAlgorithm[];
  /**
   * Verifies a token and returns who it names.
   * @throws LatchkeyError AUTH_EXPIRED when expired; AUTH_INVALID for anything else wrong
   *   (signature, algorithm, audience, issuer, not yet valid, issued in the future, unknown
   *   claims, lifetime).
   * @throws RangeError when `opts.clockToleranceSeconds` is not an integer in 0..30.
   */
  verify(token: string, opts: VerifyOptions): Promise<Principal>;
}

/**
 * A verifier for HS256 and/or EdDSA tokens. A token is checked only with the key of its own
 * algorithm, and only algorithms with a configured key are accepted (no `none`, no confusion
 * of a public key with an HMAC secret).
 * @throws RangeError when no key is given, the secret is under 32 bytes or the clock tolerance
 *   is not an integer in 0..TOKEN_CLOCK_SKEW_SECONDS; TypeError for a public key that is not
 *   Ed25519.
 */
export function createTokenVerifier(opts: TokenVerifierOptions): TokenVerifier {
  const secret = opts.hs256Secret === undefined ? undefined : Uint8Array.from(opts.hs256Secret);
  if (secret !== undefined) checkSecret(secret);
  let publicKey: KeyObject | undefined;
  if (opts.ed25519PublicKey !== undefined) {
    publicKey =
      opts.ed25519PublicKey instanceof KeyObject
        ? opts.ed25519PublicKey
        : importTokenVerifyKey(opts.ed25519PublicKey);
    checkEd25519(publicKey, 'public');
  }
  if (secret === undefined && publicKey === undefined) {
    throw new RangeError('a token verifier needs an HS256 secret or an Ed25519 public key');
  }
  const algorithms: TokenAlgorithm[] = [
    ...(secret ? (['HS256'] as const) : []),
    ...(publicKey ? (['EdDSA'] as const) : []),
  ];
  const defaultTolerance = checkTolerance(opts.clockToleranceSeconds);
  const keyFor = (header: JWTHeaderParameters): Uint8Array | KeyObject => {
    if (header.alg === 'HS256' && secret) return secret;
    if (header.alg === 'EdDSA' && publicKey) return publicKey;
    throw new LatchkeyError('AUTH_INVALID', 'invalid token', { detail: 'algorithm not accepted' });
  };

  return {
    algorithms,
    async verify(token, v) {
      const tolerance =
        v.clockToleranceSeconds === undefined
          ? defaultTolerance
          : checkTolerance(v.clockToleranceSeconds);
      const now = v.now ?? Math.floor(Date.now() / 1000);
      if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_CHARS) {
        throw new LatchkeyError('AUTH_INVALID', 'invalid token');
      }
      let payload: unknown;
      try {
        const result = await jwtVerify(token, keyFor, {
          algorithms,
          issuer: TOKEN_ISSUER,
          audience: v.audience,
          clockTolerance: tolerance,
          currentDate: new Date(now * 1000),
          requiredClaims: ['iat', 'exp', 'sub', 'jti'],
        });
        payload = result.payload;
      } catch (err) {
        if (err instanceof joseErrors.JWTExpired)
          throw new LatchkeyError('AUTH_EXPIRED', 'token expired');
        if (LatchkeyError.is(err)) throw err;
        throw new LatchkeyError('AUTH_INVALID', 'invalid token', {
          detail: err instanceof Error ? err.message : String(err),
        });
      }
      const claims = TokenClaims.safeParse(payload);
      if (!claims.success) {
        throw new LatchkeyError('AUTH_INVALID', 'invalid token', { detail: claims.error.message });
      }
      const c = claims.data;
      // jose has checked exp and nbf against `now` with the same tolerance.
      if (c.iat > now + tolerance) {
        const detail = 'issued in the future';
        throw new LatchkeyError('AUTH_INVALID', 'invalid token', { detail });
      }
      if (
        c.exp <= c.iat ||
        (c.nbf !== undefined && c.nbf < c.iat) ||
        c.exp - c.iat > MAX_TOKEN_TTL_SECONDS ||
        c.exp - now > MAX_TOKEN_TTL_SECONDS + tolerance
      ) {
        throw new LatchkeyError('AUTH_INVALID', 'token lifetime exceeds the maximum');
      }
      return {
        contactId: c.cid,
        participantId: c.sub,
        role: c.role,
        tokenId: c.jti,
        expiresAt: c.exp * 1000,
      };
    },
  };
}

/**
 * Verifies an HS256 participant token with the API secret (shorthand for
 * `createTokenVerifier({ hs256Secret }).verify(token, opts)`).
 * @throws LatchkeyError AUTH_EXPIRED when expired, AUTH_INVALID for anything else wrong.
 * @throws RangeError for a secret under 32 bytes.
 */
export async function verifyToken(
  secret: Uint8Array,
  token: string,
  opts: VerifyOptions,
): Promise<Principal> {
  checkSecret(secret);
  return createTokenVerifier({ hs256Secret: secret }).verify(token, opts);
}
