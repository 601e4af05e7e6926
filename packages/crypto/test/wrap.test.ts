import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AuthenticationError } from '../src/aead.ts';
import { hkdfSha256 } from '../src/kdf.ts';
import { deriveKek, generateContentKey, unwrapContentKey, wrapContentKey } from '../src/wrap.ts';

const master = new Uint8Array(32).fill(0x42);
const kek = deriveKek(master);
const ctx = { contactId: 'c_01HZX3', epoch: 2 };

describe('deriveKek', () => {
  it("is HKDF-SHA256(master, no salt, info 'latchkey.v1.kek'), 32 bytes", () => {
    expect(kek).toEqual(
      hkdfSha256(master, undefined, new TextEncoder().encode('latchkey.v1.kek'), 32),
    );
  });

  it('derives independent KEKs per purpose', () => {
    const a = deriveKek(master, 'a');
    expect(a).toHaveLength(32);
    expect(a).not.toEqual(kek);
    expect(deriveKek(master, 'b')).not.toEqual(a);
    expect(deriveKek(master, 'a')).toEqual(a);
  });

  it('rejects misuse', () => {
    expect(() => deriveKek(new Uint8Array(16))).toThrow(RangeError);
    expect(() => deriveKek(master, '')).toThrow(RangeError);
    expect(() => deriveKek(master, 5 as unknown as string)).toThrow(TypeError);
  });
});

describe('wrapContentKey / unwrapContentKey', () => {
  it('round-trips; output is nonce(12) || ciphertext(32) || tag(16) with a fresh nonce', async () => {
    const ck = generateContentKey();
    expect(ck).toHaveLength(32);
    const wrapped = await wrapContentKey(kek, ck, ctx);
    expect(wrapped).toHaveLength(60);
    expect(await unwrapContentKey(kek, wrapped, ctx)).toEqual(ck);
    const again = await wrapContentKey(kek, ck, ctx);
    expect(again.subarray(0, 12)).not.toEqual(wrapped.subarray(0, 12));
  });

  it('fails for the wrong contact, epoch or KEK', async () => {
    const ck = generateContentKey();
    const wrapped = await wrapContentKey(kek, ck, ctx);
    await expect(unwrapContentKey(kek, wrapped, { ...ctx, contactId: 'c_01HZX4' })).rejects.toThrow(
      AuthenticationError,
    );
    await expect(unwrapContentKey(kek, wrapped, { ...ctx, epoch: 3 })).rejects.toThrow(
      AuthenticationError,
    );
    await expect(unwrapContentKey(deriveKek(master, 'other'), wrapped, ctx)).rejects.toThrow(
      AuthenticationError,
    );
  });

  it('fails for any flipped bit and for a wrong length', async () => {
    const wrapped = await wrapContentKey(kek, generateContentKey(), ctx);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 60 * 8 - 1 }), async (bit) => {
        const bad = wrapped.slice();
        bad[bit >>> 3]! ^= 1 << (bit & 7);
        await expect(unwrapContentKey(kek, bad, ctx)).rejects.toThrow(AuthenticationError);
      }),
      { numRuns: 100 },
    );
    await expect(unwrapContentKey(kek, wrapped.subarray(0, 59), ctx)).rejects.toThrow(
      AuthenticationError,
    );
  });

  it('keeps the contact id unambiguous', async () => {
    // 'ab' at epoch 0 and 'a' at another epoch must not share additional data.
    const ck = generateContentKey();
    const wrapped = await wrapContentKey(kek, ck, { contactId: 'a', epoch: 0x62000000 });
    await expect(unwrapContentKey(kek, wrapped, { contactId: 'ab', epoch: 0 })).rejects.toThrow(
      AuthenticationError,
    );
  });

  it('rejects misuse', async () => {
    const ck = generateContentKey();
    await expect(wrapContentKey(new Uint8Array(16), ck, ctx)).rejects.toThrow(RangeError);
    await expect(wrapContentKey(kek, new Uint8Array(16), ctx)).rejects.toThrow(RangeError);
    await expect(wrapContentKey(kek, ck, { ...ctx, epoch: -1 })).rejects.toThrow(RangeError);
    await expect(
      wrapContentKey(kek, ck, { ...ctx, contactId: 1 as unknown as string }),
    ).rejects.toThrow(TypeError);
    await expect(
      wrapContentKey(kek, ck, null as unknown as { contactId: string; epoch: number }),
    ).rejects.toThrow(TypeError);
  });
});
