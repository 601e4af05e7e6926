import { describe, expect, it } from 'vitest';
import { generateX25519KeyPair, x25519PublicKey, x25519SharedSecret } from '../src/dh.ts';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));

describe('X25519', () => {
  it('agrees on a shared secret', () => {
    const a = generateX25519KeyPair();
    const b = generateX25519KeyPair();
    expect(x25519PublicKey(a.secretKey)).toEqual(a.publicKey);
    expect(x25519SharedSecret(a.secretKey, b.publicKey)).toEqual(
      x25519SharedSecret(b.secretKey, a.publicKey),
    );
  });

  it('matches RFC 7748 §6.1 (Alice and Bob)', () => {
    const alice = hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
    const bob = hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
    expect(Buffer.from(x25519PublicKey(alice)).toString('hex')).toBe(
      '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a',
    );
    expect(Buffer.from(x25519SharedSecret(alice, x25519PublicKey(bob))).toString('hex')).toBe(
      '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742',
    );
  });

  it('rejects low-order public keys and misuse', () => {
    const { secretKey } = generateX25519KeyPair();
    expect(() => x25519SharedSecret(secretKey, new Uint8Array(32))).toThrow(RangeError);
    const one = new Uint8Array(32);
    one[0] = 1;
    expect(() => x25519SharedSecret(secretKey, one)).toThrow(RangeError);
    expect(() => x25519SharedSecret(secretKey, new Uint8Array(31))).toThrow(RangeError);
    expect(() => x25519PublicKey('k' as unknown as Uint8Array)).toThrow(TypeError);
  });
});
