import { describe, expect, it } from 'vitest';
import { hkdfSha256 } from '../src/kdf.ts';
import { hmacSha256, sha256 } from '../src/mac.ts';

describe('hkdfSha256, hmacSha256, sha256 misuse', () => {
  it('checks argument types and the output length', () => {
    const k = new Uint8Array(32);
    expect(hkdfSha256(k, undefined, new Uint8Array(0), 8160)).toHaveLength(8160);
    expect(() => hkdfSha256(k, undefined, new Uint8Array(0), 8161)).toThrow(RangeError);
    expect(() => hkdfSha256(k, undefined, new Uint8Array(0), -1)).toThrow(RangeError);
    expect(() => hkdfSha256('k' as unknown as Uint8Array, undefined, k, 32)).toThrow(TypeError);
    expect(() => hkdfSha256(k, 's' as unknown as Uint8Array, k, 32)).toThrow(TypeError);
    expect(() => hmacSha256(k, 'x' as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => sha256(null as unknown as Uint8Array)).toThrow(TypeError);
  });

  it('computes SHA-256 (FIPS 180-4 "abc")', () => {
    expect(Buffer.from(sha256(new TextEncoder().encode('abc'))).toString('hex')).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
  });
});
