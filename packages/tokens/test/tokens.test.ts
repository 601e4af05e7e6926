import { describe, expect, it } from 'vitest';
import { SignJWT } from 'jose';
import { AUDIENCE_KEYS, AUDIENCE_RELAY, LatchkeyError } from '@latchkey/protocol';
import { mintToken, verifyToken } from '../src/index.ts';

const secret = new Uint8Array(32).fill(7);
const other = new Uint8Array(32).fill(8);
const base = { contactId: 'c1', participantId: 'p1', role: 'visitor' as const, ttlSeconds: 600 };

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (LatchkeyError.is(err)) return err.code;
    throw err;
  }
  return 'OK';
}

describe('participant tokens', () => {
  it('round-trips for both audiences', async () => {
    const t = await mintToken(secret, base);
    for (const audience of [AUDIENCE_RELAY, AUDIENCE_KEYS] as const) {
      const p = await verifyToken(secret, t, { audience });
      expect(p).toMatchObject({ contactId: 'c1', participantId: 'p1', role: 'visitor' });
      expect(p.expiresAt).toBeGreaterThan(Date.now());
    }
  });

  it('refuses a wrong secret, an expired token and garbage', async () => {
    const t = await mintToken(secret, base);
    expect(await code(verifyToken(other, t, { audience: AUDIENCE_RELAY }))).toBe('AUTH_INVALID');
    const old = await mintToken(secret, { ...base, now: 1_000_000 });
    expect(await code(verifyToken(secret, old, { audience: AUDIENCE_RELAY }))).toBe('AUTH_EXPIRED');
    expect(await code(verifyToken(secret, 'a.b.c', { audience: AUDIENCE_RELAY }))).toBe(
      'AUTH_INVALID',
    );
    expect(
      await code(verifyToken(secret, t.slice(0, -2) + 'AA', { audience: AUDIENCE_RELAY })),
    ).toBe('AUTH_INVALID');
  });

  it('refuses extra claims such as personal data, and alg none', async () => {
    const now = Math.floor(Date.now() / 1000);
    const withEmail = await new SignJWT({ cid: 'c1', role: 'agent', email: 'a@example.com' })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer('latchkey')
      .setAudience([AUDIENCE_RELAY, AUDIENCE_KEYS])
      .setSubject('p1')
      .setIssuedAt(now)
      .setExpirationTime(now + 60)
      .setJti('abcdefghijkl')
      .sign(secret);
    expect(await code(verifyToken(secret, withEmail, { audience: AUDIENCE_RELAY }))).toBe(
      'AUTH_INVALID',
    );
    const header = Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url');
    const body = Buffer.from(
      JSON.stringify({
        iss: 'latchkey',
        aud: AUDIENCE_RELAY,
        sub: 'p1',
        cid: 'c1',
        role: 'agent',
        iat: now,
        exp: now + 60,
        jti: 'abcdefghijkl',
      }),
    ).toString('base64url');
    expect(
      await code(verifyToken(secret, `${header}.${body}.`, { audience: AUDIENCE_RELAY })),
    ).toBe('AUTH_INVALID');
  });

  it('refuses a lifetime above the maximum and bad ids at mint time', async () => {
    expect(await code(mintToken(secret, { ...base, ttlSeconds: 10 * 24 * 3600 }))).toBe(
      'BAD_REQUEST',
    );
    expect(await code(mintToken(secret, { ...base, contactId: 'has space' }))).toBe('BAD_REQUEST');
    await expect(verifyToken(new Uint8Array(4), 'x', { audience: AUDIENCE_RELAY })).rejects.toThrow(
      RangeError,
    );
  });
});
