/**
 * Token times against the verifier's own clock (issue 13, item 5): a token issued in the future
 * beyond the clock-skew tolerance is refused, and a token lives at most 24 h from issuance and
 * from the verifier's now, so a future `iat` cannot stretch its life. The same 30 s tolerance
 * applies to `exp`, `nbf` and `iat`. Both modes (HS256, EdDSA); the verifier's clock is fixed.
 */
import { describe, expect, it } from 'vitest';
import { SignJWT } from 'jose';
import {
  AUDIENCE_KEYS,
  AUDIENCE_RELAY,
  LatchkeyError,
  MAX_TOKEN_TTL_SECONDS,
} from '@latchkey/protocol';
import {
  TOKEN_CLOCK_SKEW_SECONDS,
  createTokenVerifier,
  generateTokenKeyPair,
  mintToken,
  type TokenSigningKey,
  type TokenVerifier,
} from '../src/index.ts';

const NOW = 1_900_000_000;
const SKEW = 30;
const DAY = 24 * 3600;
const secret = new Uint8Array(32).fill(7);
const pair = generateTokenKeyPair();
const base = { contactId: 'c1', participantId: 'p1', role: 'agent' as const };

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (LatchkeyError.is(err)) return err.code;
    throw err;
  }
  return 'OK';
}

interface Mode {
  name: string;
  key: TokenSigningKey;
  alg: 'HS256' | 'EdDSA';
  verifier: TokenVerifier;
}

const modes: Mode[] = [
  {
    name: 'HS256',
    key: secret,
    alg: 'HS256',
    verifier: createTokenVerifier({ hs256Secret: secret }),
  },
  {
    name: 'EdDSA',
    key: pair.privateKey,
    alg: 'EdDSA',
    verifier: createTokenVerifier({ ed25519PublicKey: pair.publicKey }),
  },
];

describe.each(modes)('token times against the verifier clock ($name)', (mode) => {
  /** A correctly signed token with exactly these times (no check at mint). */
  const token = (times: { iat: number; exp: number; nbf?: number }): Promise<string> =>
    new SignJWT({
      iss: 'latchkey',
      aud: [AUDIENCE_RELAY, AUDIENCE_KEYS],
      sub: 'p1',
      cid: 'c1',
      role: 'agent',
      jti: 'abcdefghijkl',
      ...times,
    })
      .setProtectedHeader({ alg: mode.alg })
      .sign(mode.key);
  const at = async (now: number, t: Promise<string> | string): Promise<string> =>
    code(mode.verifier.verify(await t, { audience: AUDIENCE_RELAY, now }));

  it('has one named 30 s tolerance', () => {
    expect(TOKEN_CLOCK_SKEW_SECONDS).toBe(SKEW);
  });

  it('refuses an iat in the future beyond the skew tolerance, accepts it within', async () => {
    expect(await at(NOW, token({ iat: NOW + SKEW + 1, exp: NOW + 600 }))).toBe('AUTH_INVALID');
    expect(await at(NOW, token({ iat: NOW + 3600, exp: NOW + 7200 }))).toBe('AUTH_INVALID');
    expect(await at(NOW, token({ iat: NOW + SKEW, exp: NOW + 600 }))).toBe('OK');
  });

  it('a token minted with a future iat cannot outlive 24 h from the verifier clock', async () => {
    // Minted by a backend whose clock (or intent) is 10 h ahead: exp - iat is exactly 24 h.
    const ahead = mintToken(mode.key, {
      ...base,
      ttlSeconds: MAX_TOKEN_TTL_SECONDS,
      now: NOW + 10 * 3600,
    });
    expect(await at(NOW, ahead)).toBe('AUTH_INVALID');
    const t = await token({ iat: NOW + 10 * 3600, exp: NOW + 10 * 3600 + DAY });
    expect(await at(NOW, t)).toBe('AUTH_INVALID');
    expect(await at(NOW + 5 * 3600, t)).toBe('AUTH_INVALID');
    // Once the verifier's clock reaches iat, the token has at most 24 h left and is fine.
    expect(await at(NOW + 10 * 3600, t)).toBe('OK');
  });

  it('refuses exp more than 24 h after iat, also when nbf is later than iat', async () => {
    expect(await at(NOW, token({ iat: NOW, exp: NOW + DAY + 1 }))).toBe('AUTH_INVALID');
    expect(await at(NOW, token({ iat: NOW, exp: NOW + DAY }))).toBe('OK');
    const later = await token({ iat: NOW, nbf: NOW + 3600, exp: NOW + 3600 + DAY });
    expect(await at(NOW + 3600, later)).toBe('AUTH_INVALID');
    expect(await at(NOW + 3600, token({ iat: NOW, nbf: NOW + 3600, exp: NOW + DAY }))).toBe('OK');
  });

  it('does not mint a token that would live longer than 24 h after its iat', async () => {
    expect(
      await code(
        mintToken(mode.key, { ...base, ttlSeconds: DAY, notBefore: NOW + 3600, now: NOW }),
      ),
    ).toBe('BAD_REQUEST');
    expect(
      await code(
        mintToken(mode.key, { ...base, ttlSeconds: DAY - 3600, notBefore: NOW + 3600, now: NOW }),
      ),
    ).toBe('OK');
  });

  it('applies the same tolerance to exp, nbf and iat', async () => {
    expect(await at(NOW, token({ iat: NOW - 600, exp: NOW - SKEW }))).toBe('AUTH_EXPIRED');
    expect(await at(NOW, token({ iat: NOW - 600, exp: NOW - SKEW + 1 }))).toBe('OK');
    expect(await at(NOW, token({ iat: NOW, nbf: NOW + SKEW + 1, exp: NOW + 600 }))).toBe(
      'AUTH_INVALID',
    );
    expect(await at(NOW, token({ iat: NOW, nbf: NOW + SKEW, exp: NOW + 600 }))).toBe('OK');
    expect(await at(NOW, token({ iat: NOW + SKEW + 1, exp: NOW + 600 }))).toBe('AUTH_INVALID');
    expect(await at(NOW, token({ iat: NOW + SKEW, exp: NOW + 600 }))).toBe('OK');
  });
});

describe('clock-skew tolerance configuration', () => {
  it('can be tightened but not loosened beyond 30 s', async () => {
    expect(() => createTokenVerifier({ hs256Secret: secret, clockToleranceSeconds: 3600 })).toThrow(
      RangeError,
    );
    expect(() => createTokenVerifier({ hs256Secret: secret, clockToleranceSeconds: -1 })).toThrow(
      RangeError,
    );
    expect(() => createTokenVerifier({ hs256Secret: secret, clockToleranceSeconds: 1.5 })).toThrow(
      RangeError,
    );
    const strict = createTokenVerifier({ hs256Secret: secret, clockToleranceSeconds: 0 });
    const t = await new SignJWT({
      iss: 'latchkey',
      aud: AUDIENCE_RELAY,
      sub: 'p1',
      cid: 'c1',
      role: 'agent',
      jti: 'abcdefghijkl',
      iat: NOW + 1,
      exp: NOW + 600,
    })
      .setProtectedHeader({ alg: 'HS256' })
      .sign(secret);
    expect(await code(strict.verify(t, { audience: AUDIENCE_RELAY, now: NOW }))).toBe(
      'AUTH_INVALID',
    );
    expect(await code(strict.verify(t, { audience: AUDIENCE_RELAY, now: NOW + 1 }))).toBe('OK');
    await expect(
      strict.verify(t, { audience: AUDIENCE_RELAY, now: NOW, clockToleranceSeconds: 60 }),
    ).rejects.toThrow(RangeError);
  });
});
