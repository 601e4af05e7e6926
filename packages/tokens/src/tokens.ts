/**
 * Participant tokens (JWT, RFC 7519) minted by the enterprise's backend and verified by the
 * relay and the key service. HS256 with the API secret in the dev default. The claim set is
 * closed (see TokenClaims): unknown claims make a token invalid.
 */
import { SignJWT, jwtVerify, errors as joseErrors } from 'jose';
import {
  AUDIENCE_KEYS,
  AUDIENCE_RELAY,
  LatchkeyError,
  MAX_TOKEN_TTL_SECONDS,
  TOKEN_ISSUER,
  TokenClaims,
  type Principal,
  type Role,
} from '@latchkey/protocol';

export interface MintOptions {
  contactId: string;
  participantId: string;
  role: Role;
  /** Lifetime in seconds (1 .. MAX_TOKEN_TTL_SECONDS). */
  ttlSeconds: number;
  /** Unix seconds; defaults to now. */
  now?: number;
}

const MIN_SECRET_BYTES = 32;

function checkSecret(secret: Uint8Array): void {
  if (!(secret instanceof Uint8Array) || secret.length < MIN_SECRET_BYTES) {
    throw new RangeError(`API secret must be at least ${MIN_SECRET_BYTES} bytes`);
  }
}

function randomId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Buffer.from(bytes).toString('base64url');
}

/**
 * Mints a participant token signed with the API secret (HS256).
 * @throws LatchkeyError BAD_REQUEST on an invalid id, role or lifetime.
 */
export async function mintToken(secret: Uint8Array, opts: MintOptions): Promise<string> {
  checkSecret(secret);
  if (!Number.isInteger(opts.ttlSeconds) || opts.ttlSeconds < 1 || opts.ttlSeconds > MAX_TOKEN_TTL_SECONDS) {
    throw new LatchkeyError('BAD_REQUEST', `ttl must be 1..${MAX_TOKEN_TTL_SECONDS} seconds`);
  }
  const iat = opts.now ?? Math.floor(Date.now() / 1000);
  const claims = {
    iss: TOKEN_ISSUER,
    aud: [AUDIENCE_RELAY, AUDIENCE_KEYS],
    sub: opts.participantId,
    cid: opts.contactId,
    role: opts.role,
    iat,
    exp: iat + opts.ttlSeconds,
    jti: randomId(),
  };
  const parsed = TokenClaims.safeParse(claims);
  if (!parsed.success) throw new LatchkeyError('BAD_REQUEST', 'invalid token claims', { detail: parsed.error.message });
  return new SignJWT({ cid: claims.cid, role: claims.role })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer(claims.iss)
    .setAudience(claims.aud)
    .setSubject(claims.sub)
    .setIssuedAt(claims.iat)
    .setExpirationTime(claims.exp)
    .setJti(claims.jti)
    .sign(secret);
}

export interface VerifyOptions {
  /** Which service verifies: the token's audience must name it. */
  audience: typeof AUDIENCE_RELAY | typeof AUDIENCE_KEYS;
  /** Unix seconds; defaults to now. */
  now?: number;
  /** Allowed clock skew in seconds (default 30). */
  clockToleranceSeconds?: number;
}

/**
 * Verifies a participant token and returns who it names.
 * @throws LatchkeyError AUTH_EXPIRED when expired, AUTH_INVALID for anything else wrong.
 */
export async function verifyToken(secret: Uint8Array, token: string, opts: VerifyOptions): Promise<Principal> {
  checkSecret(secret);
  if (typeof token !== 'string' || token.length === 0 || token.length > 4096) {
    throw new LatchkeyError('AUTH_INVALID', 'invalid token');
  }
  let payload: unknown;
  try {
    const result = await jwtVerify(token, secret, {
      algorithms: ['HS256'],
      issuer: TOKEN_ISSUER,
      audience: opts.audience,
      clockTolerance: opts.clockToleranceSeconds ?? 30,
      ...(opts.now === undefined ? {} : { currentDate: new Date(opts.now * 1000) }),
      requiredClaims: ['iat', 'exp', 'sub', 'jti'],
    });
    payload = result.payload;
  } catch (err) {
    if (err instanceof joseErrors.JWTExpired) throw new LatchkeyError('AUTH_EXPIRED', 'token expired');
    throw new LatchkeyError('AUTH_INVALID', 'invalid token', { detail: err instanceof Error ? err.message : String(err) });
  }
  const claims = TokenClaims.safeParse(payload);
  if (!claims.success) {
    throw new LatchkeyError('AUTH_INVALID', 'invalid token', { detail: claims.error.message });
  }
  const c = claims.data;
  if (c.exp - c.iat > MAX_TOKEN_TTL_SECONDS || c.exp <= c.iat) {
    throw new LatchkeyError('AUTH_INVALID', 'token lifetime exceeds the maximum');
  }
  return { contactId: c.cid, participantId: c.sub, role: c.role, tokenId: c.jti, expiresAt: c.exp * 1000 };
}
