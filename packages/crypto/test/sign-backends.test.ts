/**
 * The Ed25519 functions give the same answers on every backend (node:crypto, WebCrypto, noble):
 * the RFC 8032 §7.1 vectors, random keys and messages, and tampered signatures.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import '../src/_node.ts';
import {
  generateSigningKeyPair,
  setEd25519Backend,
  sign,
  signAsync,
  signWithContext,
  signWithContextAsync,
  verifyAsync,
  verifyWithContextAsync,
  ed25519Backend,
} from '../src/sign.ts';
import { hex, toHex } from './_hex.ts';

const vectors = JSON.parse(
  readFileSync(new URL('./vectors/rfc8032-ed25519.json', import.meta.url), 'utf8'),
) as {
  tests: {
    name: string;
    secretKey: string;
    publicKey: string;
    message: string;
    signature: string;
  }[];
};

afterEach(() => setEd25519Backend('auto'));

describe.each(['node', 'webcrypto', 'noble'] as const)('Ed25519 on %s', (backend) => {
  it('uses that backend', () => {
    setEd25519Backend(backend);
    expect(ed25519Backend()).toBe(backend);
  });

  it('reproduces the RFC 8032 vectors', async () => {
    setEd25519Backend(backend);
    for (const v of vectors.tests) {
      const sig = await signAsync(hex(v.secretKey), hex(v.message));
      expect(toHex(sig), v.name).toBe(v.signature);
      expect(await verifyAsync(hex(v.publicKey), hex(v.message), sig), v.name).toBe(true);
      const bad = new Uint8Array(sig);
      bad[0]! ^= 1;
      expect(await verifyAsync(hex(v.publicKey), hex(v.message), bad), v.name).toBe(false);
    }
  });

  it('agrees with the synchronous noble functions on random input', async () => {
    setEd25519Backend(backend);
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), fc.nat(), async (msg, flip) => {
        const { secretKey, publicKey } = generateSigningKeyPair();
        const sig = await signWithContextAsync(secretKey, 'latchkey.v1.test', msg);
        expect(toHex(sig)).toBe(toHex(signWithContext(secretKey, 'latchkey.v1.test', msg)));
        expect(await verifyWithContextAsync(publicKey, 'latchkey.v1.test', msg, sig)).toBe(true);
        expect(await verifyWithContextAsync(publicKey, 'latchkey.v1.other', msg, sig)).toBe(false);
        const bad = new Uint8Array(sig);
        bad[flip % 64]! ^= 1 << (flip % 8);
        expect(await verifyWithContextAsync(publicKey, 'latchkey.v1.test', msg, bad)).toBe(false);
        expect(toHex(await signAsync(secretKey, msg))).toBe(toHex(sign(secretKey, msg)));
      }),
      { numRuns: 60 },
    );
  });

  it('never throws on malformed input', async () => {
    setEd25519Backend(backend);
    expect(await verifyAsync(new Uint8Array(31), new Uint8Array(1), new Uint8Array(64))).toBe(
      false,
    );
    expect(
      await verifyAsync(new Uint8Array(32).fill(0xff), new Uint8Array(1), new Uint8Array(64)),
    ).toBe(false);
    await expect(signAsync(new Uint8Array(5), new Uint8Array(1))).rejects.toThrow(RangeError);
  });
});
