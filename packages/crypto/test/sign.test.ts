import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  generateSigningKeyPair,
  sign,
  signingPublicKey,
  signWithContext,
  verify,
  verifyWithContext,
} from '../src/sign.ts';

describe('Ed25519', () => {
  it('generates key pairs whose public half matches the secret', () => {
    const { secretKey, publicKey } = generateSigningKeyPair();
    expect(secretKey).toHaveLength(32);
    expect(signingPublicKey(secretKey)).toEqual(publicKey);
    expect(generateSigningKeyPair().secretKey).not.toEqual(secretKey);
  });

  it('verify never throws on bad input', () => {
    const { secretKey, publicKey } = generateSigningKeyPair();
    const msg = new Uint8Array([1, 2, 3]);
    const sig = sign(secretKey, msg);
    expect(verify(publicKey, msg, sig)).toBe(true);
    expect(verify(publicKey, msg, sig.subarray(0, 63))).toBe(false);
    expect(verify(publicKey.subarray(1), msg, sig)).toBe(false);
    expect(verify(new Uint8Array(32).fill(0xff), msg, sig)).toBe(false); // not a point
    expect(verify('pk' as unknown as Uint8Array, msg, sig)).toBe(false);
    expect(verify(publicKey, null as unknown as Uint8Array, sig)).toBe(false);
    expect(verify(publicKey, msg, undefined as unknown as Uint8Array)).toBe(false);
  });

  it('rejects a non-canonical S (S + L), i.e. is not malleable', () => {
    const { secretKey, publicKey } = generateSigningKeyPair();
    const msg = new Uint8Array([9]);
    const sig = sign(secretKey, msg);
    const L = 2n ** 252n + 27742317777372353535851937790883648493n;
    let s = 0n;
    for (let i = 63; i >= 32; i--) s = (s << 8n) | BigInt(sig[i]!);
    let t = s + L;
    const forged = sig.slice();
    for (let i = 32; i < 64; i++) {
      forged[i] = Number(t & 0xffn);
      t >>= 8n;
    }
    expect(verify(publicKey, msg, forged)).toBe(false);
  });

  it('treats misuse of sign as TypeError/RangeError', () => {
    expect(() => sign(new Uint8Array(64), new Uint8Array(1))).toThrow(RangeError);
    expect(() => sign(new Uint8Array(32), 'm' as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => signingPublicKey(new Uint8Array(31))).toThrow(RangeError);
  });
});

describe('signWithContext', () => {
  const { secretKey, publicKey } = generateSigningKeyPair();

  it('binds the signature to its context', () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 20 }),
        fc.string({ minLength: 1, maxLength: 20 }),
        fc.uint8Array({ maxLength: 64 }),
        (ctxA, ctxB, msg) => {
          const sig = signWithContext(secretKey, ctxA, msg);
          expect(verifyWithContext(publicKey, ctxA, msg, sig)).toBe(true);
          expect(verifyWithContext(publicKey, ctxB, msg, sig)).toBe(ctxA === ctxB);
        },
      ),
      { numRuns: 50 },
    );
  });

  it('signs u32(len) || context || message', () => {
    const msg = new Uint8Array([5, 6]);
    const sig = signWithContext(secretKey, 'ab', msg);
    expect(verify(publicKey, new Uint8Array([0, 0, 0, 2, 0x61, 0x62, 5, 6]), sig)).toBe(true);
    // Moving bytes between context and message does not keep the signature valid.
    expect(verifyWithContext(publicKey, 'a', new Uint8Array([0x62, 5, 6]), sig)).toBe(false);
    expect(verify(publicKey, msg, sig)).toBe(false);
  });

  it('rejects an empty or malformed context when signing, returns false when verifying', () => {
    const msg = new Uint8Array(1);
    expect(() => signWithContext(secretKey, '', msg)).toThrow(RangeError);
    expect(() => signWithContext(secretKey, 1 as unknown as string, msg)).toThrow(TypeError);
    expect(() => signWithContext(secretKey, '\ud800', msg)).toThrow(TypeError);
    const sig = signWithContext(secretKey, 'x', msg);
    expect(verifyWithContext(publicKey, '', msg, sig)).toBe(false);
    expect(verifyWithContext(publicKey, 7 as unknown as string, msg, sig)).toBe(false);
  });
});
