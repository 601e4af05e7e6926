/**
 * Participant tokens (JWT, RFC 7519) minted by the enterprise's backend and verified by the
 * relay and the key service. Two modes:
 *   - HS256 with the API secret (the dev default): whoever verifies could also mint;
 *   - EdDSA (Ed25519, RFC 8037): the backend signs with its private key, relay and key service
 *     hold only the public key, so neither can mint a token.
 * The claim set is closed (see TokenClaims): unknown claims make a token invalid. `nbf` is
 * honoured (a token used before it is AUTH_INVALID) and the lifetime is at most
 * MAX_TOKEN_TTL_SECONDS, checked at mint and at verify time.
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
  /** Lifetime in seconds (1 .. MAX_TOKEN_TTL_SECONDS), counted from `notBefore` when given. */
  ttlSeconds: number;
  /** Unix seconds; defaults to now. */
  now?: number;
  /** Unix seconds before which the token is not valid (`nbf`); at least `now`. */
  notBefore?: number;
}

const MIN_SECRET_BYTES = 32;
const MAX_TOKEN_CHARS = 4096;

function checkSecret(secret: Uint8Array): void {
  if (!(secret instanceof Uint8Array) || secret.length < MIN_SECRET_BYTES) {
    throw new RangeError(`API secret must be at least ${MIN_SECRET_BYTES} bytes`);
  }
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
  if (!Number.isInteger(opts.ttlSeconds) || opts.ttlSeconds < 1 || opts.ttlSeconds > MAX_TOKEN_TTL_SECONDS) {
    throw new LatchkeyError('BAD_REQUEST', `ttl must be 1..${MAX_TOKEN_TTL_SECONDS} seconds`);
  }
  const iat = opts.now ?? Math.floor(Date.now() / 1000);
  const nbf = opts.notBefore;
  if (nbf !== undefined && (!Number.isInteger(nbf) || nbf < iat || nbf - iat > MAX_TOKEN_TTL_SECONDS)) {
    throw new LatchkeyError('BAD_REQUEST', 'notBefore must be between now and now + the maximum lifetime');
  }
  const claims = {
    iss: TOKEN_ISSUER,
    aud: [AUDIENCE_RELAY, AUDIENCE_KEYS],
    sub: opts.participantId,
    cid: opts.contactId,
    role: opts.role,
    iat,
    ...(nbf === undefined ? {} : { nbf }),
    exp: (nbf ?? iat) + opts.ttlSeconds,
    jti: randomId(),
  };
  const parsed = TokenClaims.safeParse(claims);
  if (!parsed.success) throw new LatchkeyError('BAD_REQUEST', 'invalid token claims', { detail: parsed.error.message });
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
  /** Allowed clock skew in seconds (default: the verifier's, 30). */
  clockToleranceSeconds?: number;
}

export interface TokenVerifierOptions {
  /** HS256 API secret (at least 32 bytes): accepts HS256 tokens. */
  hs256Secret?: Uint8Array;
  /** Ed25519 public key (KeyObject, SPKI PEM or JWK): accepts EdDSA tokens. */
  ed25519PublicKey?: KeyObject | string | Record<string, unknown>;
  /** Allowed clock skew in seconds (default 30). */
  clockToleranceSeconds?: number;
}

/** Verifies participant tokens with the keys it was configured with once. */
export interface TokenVerifier {
  /** Algorithms this verifier accepts. */
  readonly algorithms: readonly TokenAlgorithm[];
  /**
   * Verifies a token and returns who it names.
   * @throws LatchkeyError AUTH_EXPIRED when expired; AUTH_INVALID for anything else wrong
   *   (signature, algorithm, audience, issuer, not yet valid, unknown claims, lifetime).
   */
  verify(token: string, opts: VerifyOptions): Promise<Principal>;
}

/**
 * A verifier for HS256 and/or EdDSA tokens. A token is checked only with the key of its own
 * algorithm, and only algorithms with a configured key are accepted (no `none`, no confusion
 * of a public key with an HMAC secret).
 * @throws RangeError when no key is given or the secret is under 32 bytes; TypeError for a
 *   public key that is not Ed25519.
 */
export function createTokenVerifier(opts: TokenVerifierOptions): TokenVerifier {
  const secret = opts.hs256Secret === undefined ? undefined : Uint8Array.from(opts.hs256Secret);
  if (secret !== undefined) checkSecret(secret);
  let publicKey: KeyObject | undefined;
  if (opts.ed25519PublicKey !== undefined) {
    publicKey = opts.ed25519PublicKey instanceof KeyObject ? opts.ed25519PublicKey : importTokenVerifyKey(opts.ed25519PublicKey);
    checkEd25519(publicKey, 'public');
  }
  if (secret === undefined && publicKey === undefined) {
    throw new RangeError('a token verifier needs an HS256 secret or an Ed25519 public key');
  }
  const algorithms: TokenAlgorithm[] = [...(secret ? (['HS256'] as const) : []), ...(publicKey ? (['EdDSA'] as const) : [])];
  const tolerance = opts.clockToleranceSeconds ?? 30;
  const keyFor = (header: JWTHeaderParameters): Uint8Array | KeyObject => {
    if (header.alg === 'HS256' && secret) return secret;
    if (header.alg === 'EdDSA' && publicKey) return publicKey;
    throw new LatchkeyError('AUTH_INVALID', 'invalid token', { detail: 'algorithm not accepted' });
  };

  return {
    algorithms,
    async verify(token, v) {
      if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_CHARS) {
        throw new LatchkeyError('AUTH_INVALID', 'invalid token');
      }
      let payload: unknown;
      try {
        const result = await jwtVerify(token, keyFor, {
          algorithms,
          issuer: TOKEN_ISSUER,
          audience: v.audience,
          clockTolerance: v.clockToleranceSeconds ?? tolerance,
          ...(v.now === undefined ? {} : { currentDate: new Date(v.now * 1000) }),
          requiredClaims: ['iat', 'exp', 'sub', 'jti'],
        });
        payload = result.payload;
      } catch (err) {
        if (err instanceof joseErrors.JWTExpired) throw new LatchkeyError('AUTH_EXPIRED', 'token expired');
        if (LatchkeyError.is(err)) throw err;
        throw new LatchkeyError('AUTH_INVALID', 'invalid token', { detail: err instanceof Error ? err.message : String(err) });
      }
      const claims = TokenClaims.safeParse(payload);
      if (!claims.success) {
        throw new LatchkeyError('AUTH_INVALID', 'invalid token', { detail: claims.error.message });
      }
      const c = claims.data;
      const start = c.nbf ?? c.iat;
      if (c.exp <= c.iat || start < c.iat || c.exp - c.iat > 2 * MAX_TOKEN_TTL_SECONDS || c.exp - start > MAX_TOKEN_TTL_SECONDS) {
        throw new LatchkeyError('AUTH_INVALID', 'token lifetime exceeds the maximum');
      }
      return { contactId: c.cid, participantId: c.sub, role: c.role, tokenId: c.jti, expiresAt: c.exp * 1000 };
    },
  };
}

/**
 * Verifies an HS256 participant token with the API secret (shorthand for
 * `createTokenVerifier({ hs256Secret }).verify(token, opts)`).
 * @throws LatchkeyError AUTH_EXPIRED when expired, AUTH_INVALID for anything else wrong.
 * @throws RangeError for a secret under 32 bytes.
 */
export async function verifyToken(secret: Uint8Array, token: string, opts: VerifyOptions): Promise<Principal> {
  checkSecret(secret);
  return createTokenVerifier({ hs256Secret: secret }).verify(token, opts);
}
