/**
 * The encoding bounds of the strict pre-check (_ed25519-strict.ts), at their edges: S < L
 * (RFC 8032 §5.1.7) and R's y < p (§5.1.3), compared byte-wise without BigInts.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { concatBytes, numberToBytesLE } from '@noble/curves/utils.js';
import { describe, expect, it } from 'vitest';
import { passesPrecheck } from '../src/_ed25519-strict.ts';
import { generateSigningKeyPair } from '../src/sign.ts';

const { Fn, Fp } = ed25519.Point;
const key = generateSigningKeyPair().publicKey;
const message = new Uint8Array(3);
const R = ed25519.Point.BASE.toBytes();
const le = (n: bigint): Uint8Array => numberToBytesLE(n, 32);
const withS = (s: bigint): Uint8Array => concatBytes(R, le(s));
const withY = (y: bigint, sign = 0): Uint8Array => {
  const r = le(y);
  r[31]! |= sign << 7;
  return concatBytes(r, le(1n));
};

describe('the pre-check of signature encodings', () => {
  it('takes S below L and refuses S from L on', () => {
    for (const s of [0n, 1n, Fn.ORDER - 1n, Fn.ORDER - 256n, 2n ** 252n]) {
      expect(passesPrecheck(key, message, withS(s)), `S = ${s}`).toBe(true);
    }
    for (const s of [Fn.ORDER, Fn.ORDER + 1n, Fn.ORDER + 256n, 2n ** 253n, 2n ** 256n - 1n]) {
      expect(passesPrecheck(key, message, withS(s)), `S = ${s}`).toBe(false);
    }
  });

  it('takes an R with y below p and refuses y from p on, either sign bit', () => {
    for (const sign of [0, 1]) {
      for (const y of [2n, Fp.ORDER - 2n, Fp.ORDER - 256n]) {
        expect(passesPrecheck(key, message, withY(y, sign)), `y = ${y}`).toBe(true);
      }
      for (const y of [Fp.ORDER, Fp.ORDER + 2n, 2n ** 255n - 1n]) {
        expect(passesPrecheck(key, message, withY(y, sign)), `y = ${y}`).toBe(false);
      }
    }
  });
});
