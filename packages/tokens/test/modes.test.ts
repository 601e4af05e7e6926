/**
 * Both token modes (HS256 with the API secret, EdDSA with an Ed25519 key pair) against the same
 * refusals: forged, expired, not yet valid, wrong audience, extra claims, too long a lifetime,
 * algorithm confusion. Plus the admin API key check.
 */
import { describe, expect, it } from 'vitest';
import { SignJWT } from 'jose';
import { AUDIENCE_KEYS, AUDIENCE_RELAY, LatchkeyError } from '@latchkey/protocol';
import {
  adminAuthorization,
  createAdminAuthenticator,
  createTokenVerifier,
  deriveAdminKey,
  generateTokenKeyPair,
  importTokenVerifyKey,
  mintToken,
  parseAdminKey,
  type TokenSigningKey,
  type TokenVerifier,
} from '../src/index.ts';

const secret = new Uint8Array(32).fill(7);
const pair = generateTokenKeyPair();
const otherPair = generateTokenKeyPair();
const base = { contactId: 'c1', participantId: 'p1', role: 'agent' as const, ttlSeconds: 600 };
const now = (): number => Math.floor(Date.now() / 1000);

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
  forger: TokenSigningKey;
  alg: 'HS256' | 'EdDSA';
  verifier: TokenVerifier;
}

const modes: Mode[] = [
  {
    name: 'HS256',
    key: secret,
    forger: new Uint8Array(32).fill(9),
    alg: 'HS256',
    verifier: createTokenVerifier({ hs256Secret: secret }),
  },
  {
    name: 'EdDSA',
    key: pair.privateKey,
    forger: otherPair.privateKey,
    alg: 'EdDSA',
    verifier: createTokenVerifier({
      ed25519PublicKey: pair.publicKey.export({ format: 'pem', type: 'spki' }).toString(),
    }),
  },
];

function raw(
  mode: Mode,
  claims: Record<string, unknown>,
  sign: TokenSigningKey = mode.key,
): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: mode.alg }).sign(sign);
}

const good = (over: Record<string, unknown> = {}): Record<string, unknown> => {
  const t = now();
  return {
    iss: 'latchkey',
    aud: [AUDIENCE_RELAY, AUDIENCE_KEYS],
    sub: 'p1',
    cid: 'c1',
    role: 'agent',
    iat: t,
    exp: t + 600,
    jti: 'abcdefghijkl',
    ...over,
  };
};

describe.each(modes)('tokens ($name)', (mode) => {
  const verify = (
    t: string,
    audience: typeof AUDIENCE_RELAY | typeof AUDIENCE_KEYS = AUDIENCE_RELAY,
  ) => mode.verifier.verify(t, { audience });

  it('round-trips for relay and key service', async () => {
    const t = await mintToken(mode.key, base);
    expect(JSON.parse(Buffer.from(t.split('.')[0] ?? '', 'base64url').toString())).toMatchObject({
      alg: mode.alg,
    });
    for (const audience of [AUDIENCE_RELAY, AUDIENCE_KEYS] as const) {
      expect(await mode.verifier.verify(t, { audience })).toMatchObject({
        contactId: 'c1',
        participantId: 'p1',
        role: 'agent',
      });
    }
  });

  it('refuses a forged token (another key) and a tampered one', async () => {
    expect(await code(verify(await mintToken(mode.forger, base)))).toBe('AUTH_INVALID');
    const t = await mintToken(mode.key, base);
    const [h, , s] = t.split('.');
    const body = Buffer.from(JSON.stringify({ ...good(), cid: 'c2' })).toString('base64url');
    expect(await code(verify(`${h}.${body}.${s}`))).toBe('AUTH_INVALID');
  });

  it('refuses an expired token with AUTH_EXPIRED', async () => {
    expect(await code(verify(await mintToken(mode.key, { ...base, now: now() - 3600 })))).toBe(
      'AUTH_EXPIRED',
    );
  });

  it('refuses a not-yet-valid token, then accepts it once valid', async () => {
    const t = await mintToken(mode.key, { ...base, notBefore: now() + 600 });
    expect(await code(verify(t))).toBe('AUTH_INVALID');
    expect(
      await code(mode.verifier.verify(t, { audience: AUDIENCE_RELAY, now: now() + 601 })),
    ).toBe('OK');
    expect(await code(verify(await raw(mode, good({ nbf: now() + 3600 }))))).toBe('AUTH_INVALID');
  });

  it('refuses a wrong audience and a wrong issuer', async () => {
    expect(await code(verify(await raw(mode, good({ aud: 'latchkey:other' }))))).toBe(
      'AUTH_INVALID',
    );
    expect(await code(verify(await raw(mode, good({ aud: AUDIENCE_KEYS }))))).toBe('AUTH_INVALID');
    expect(await code(verify(await raw(mode, good({ aud: AUDIENCE_KEYS })), AUDIENCE_KEYS))).toBe(
      'OK',
    );
    expect(await code(verify(await raw(mode, good({ iss: 'someone' }))))).toBe('AUTH_INVALID');
  });

  it('refuses extra claims (personal data) and a lifetime above 24 h', async () => {
    expect(await code(verify(await raw(mode, good({ email: 'a@example.com' }))))).toBe(
      'AUTH_INVALID',
    );
    expect(await code(verify(await raw(mode, good({ name: 'Ann' }))))).toBe('AUTH_INVALID');
    expect(await code(verify(await raw(mode, good({ exp: now() + 25 * 3600 }))))).toBe(
      'AUTH_INVALID',
    );
    expect(await code(mintToken(mode.key, { ...base, ttlSeconds: 25 * 3600 }))).toBe('BAD_REQUEST');
  });

  it('refuses alg none', async () => {
    const header = Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url');
    const body = Buffer.from(JSON.stringify(good())).toString('base64url');
    expect(await code(verify(`${header}.${body}.`))).toBe('AUTH_INVALID');
  });
});

describe('token verifier configuration', () => {
  it('accepts only the algorithms it holds a key for (no HS256/EdDSA confusion)', async () => {
    const edOnly = createTokenVerifier({ ed25519PublicKey: pair.publicKey });
    const hsOnly = createTokenVerifier({ hs256Secret: secret });
    expect(edOnly.algorithms).toEqual(['EdDSA']);
    expect(
      await code(edOnly.verify(await mintToken(secret, base), { audience: AUDIENCE_RELAY })),
    ).toBe('AUTH_INVALID');
    expect(
      await code(
        hsOnly.verify(await mintToken(pair.privateKey, base), { audience: AUDIENCE_RELAY }),
      ),
    ).toBe('AUTH_INVALID');
    // An HS256 token whose HMAC key is the public key's bytes: refused by an EdDSA verifier.
    const spki = pair.publicKey.export({ format: 'der', type: 'spki' });
    const confused = await new SignJWT(good())
      .setProtectedHeader({ alg: 'HS256' })
      .sign(new Uint8Array(spki));
    expect(await code(edOnly.verify(confused, { audience: AUDIENCE_RELAY }))).toBe('AUTH_INVALID');
    const both = createTokenVerifier({
      hs256Secret: secret,
      ed25519PublicKey: pair.publicKey.export({ format: 'jwk' }) as Record<string, unknown>,
    });
    expect(
      await code(both.verify(await mintToken(secret, base), { audience: AUDIENCE_RELAY })),
    ).toBe('OK');
    expect(
      await code(both.verify(await mintToken(pair.privateKey, base), { audience: AUDIENCE_RELAY })),
    ).toBe('OK');
  });

  it('refuses to be built without a key or with a non-Ed25519 key', () => {
    expect(() => createTokenVerifier({})).toThrow(RangeError);
    expect(() => createTokenVerifier({ hs256Secret: new Uint8Array(8) })).toThrow(RangeError);
    expect(() => importTokenVerifyKey('not a key')).toThrow(TypeError);
    expect(() => createTokenVerifier({ ed25519PublicKey: pair.privateKey })).toThrow(TypeError);
  });
});

describe('admin API keys', () => {
  const key = deriveAdminKey(secret);
  const auth = createAdminAuthenticator([key]);

  it('accepts the right key and refuses a wrong secret, an unknown id and no header', () => {
    expect(auth.check(adminAuthorization(key), '127.0.0.1')).toBe('default');
    const wrong = { id: key.id, secret: new Uint8Array(32).fill(1) };
    expect(() => auth.check(adminAuthorization(wrong), '127.0.0.1')).toThrow(
      expect.objectContaining({ code: 'AUTH_INVALID' }) as Error,
    );
    expect(() =>
      auth.check(adminAuthorization({ id: 'other', secret: key.secret }), '127.0.0.1'),
    ).toThrow(expect.objectContaining({ code: 'AUTH_INVALID' }) as Error);
    expect(() => auth.check(adminAuthorization(key).slice(0, -3), '127.0.0.1')).toThrow(
      expect.objectContaining({ code: 'AUTH_INVALID' }) as Error,
    );
    expect(() => auth.check(undefined, '127.0.0.1')).toThrow(
      expect.objectContaining({ code: 'AUTH_REQUIRED' }) as Error,
    );
    expect(() => auth.check('Basic abc', '127.0.0.1')).toThrow(
      expect.objectContaining({ code: 'AUTH_REQUIRED' }) as Error,
    );
  });

  it('is reachable from loopback only by default, and from a configured allowlist', () => {
    expect(auth.check(adminAuthorization(key), '::ffff:127.0.0.1')).toBe('default');
    expect(auth.check(adminAuthorization(key), '::1')).toBe('default');
    // Even the right key is refused from elsewhere, before it is looked at.
    expect(() => auth.check(adminAuthorization(key), '10.0.0.5')).toThrow(
      expect.objectContaining({ code: 'FORBIDDEN' }) as Error,
    );
    expect(() => auth.check(undefined, '10.0.0.5')).toThrow(
      expect.objectContaining({ code: 'FORBIDDEN' }) as Error,
    );
    const office = createAdminAuthenticator([key], { ipAllowlist: ['10.0.0.0/24'] });
    expect(office.check(adminAuthorization(key), '10.0.0.5')).toBe('default');
    expect(() => office.check(adminAuthorization(key), '127.0.0.1')).toThrow(
      expect.objectContaining({ code: 'FORBIDDEN' }) as Error,
    );
    expect(() => createAdminAuthenticator([key], { ipAllowlist: ['not an ip'] })).toThrow(
      RangeError,
    );
  });

  it('derives a key distinct from the API secret and parses id:secret', () => {
    expect(Buffer.from(key.secret).equals(Buffer.from(secret))).toBe(false);
    const text = adminAuthorization(key).slice('Bearer '.length);
    expect(parseAdminKey(text)).toEqual(key);
    expect(() => parseAdminKey('nocolon')).toThrow(RangeError);
    expect(() => parseAdminKey('id:short')).toThrow(RangeError);
  });
});
