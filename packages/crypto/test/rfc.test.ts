/**
 * Published RFC test vectors stored in test/vectors/ (sources in test/README.md): RFC 5869
 * HKDF-SHA256, RFC 4231 HMAC-SHA256, RFC 8032 Ed25519.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { hkdfSha256 } from '../src/kdf.ts';
import { hmacSha256 } from '../src/mac.ts';
import { sign, signingPublicKey, verify } from '../src/sign.ts';
import { hex, toHex } from './_hex.ts';

function load<T>(name: string): { source: string; tests: T[] } {
  return JSON.parse(readFileSync(new URL(`./vectors/${name}`, import.meta.url), 'utf8')) as {
    source: string;
    tests: T[];
  };
}

interface HkdfVector {
  name: string;
  ikm: string;
  salt: string;
  info: string;
  length: number;
  prk: string;
  okm: string;
}
interface HmacVector {
  name: string;
  key: string;
  data: string;
  mac: string;
}
interface Ed25519Vector {
  name: string;
  secretKey: string;
  publicKey: string;
  message: string;
  signature: string;
}

describe('RFC 5869 Appendix A: HKDF-SHA256', () => {
  const { tests } = load<HkdfVector>('rfc5869-hkdf-sha256.json');
  it('has test cases 1-3', () => expect(tests).toHaveLength(3));
  for (const t of tests) {
    it(t.name, () => {
      expect(toHex(hkdfSha256(hex(t.ikm), hex(t.salt), hex(t.info), t.length))).toBe(t.okm);
      // PRK = HMAC-Hash(salt, IKM) (§2.2); the salt of A.3 is empty, i.e. HashLen zeros.
      const salt = t.salt === '' ? new Uint8Array(32) : hex(t.salt);
      expect(toHex(hmacSha256(salt, hex(t.ikm)))).toBe(t.prk);
      if (t.salt === '') {
        expect(toHex(hkdfSha256(hex(t.ikm), undefined, hex(t.info), t.length))).toBe(t.okm);
      }
    });
  }
});

describe('RFC 4231 §4: HMAC-SHA256', () => {
  const { tests } = load<HmacVector>('rfc4231-hmac-sha256.json');
  it('has test cases 1-7', () => expect(tests).toHaveLength(7));
  for (const t of tests) {
    it(t.name, () => {
      // Test Case 5 publishes only the leftmost 128 bits (RFC 4231 §4.6).
      const mac = toHex(hmacSha256(hex(t.key), hex(t.data)));
      expect(mac.slice(0, t.mac.length)).toBe(t.mac);
    });
  }
});

describe('RFC 8032 §7.1: Ed25519', () => {
  const { tests } = load<Ed25519Vector>('rfc8032-ed25519.json');
  it('has TEST 1, 2, 3, 1024 and SHA(abc)', () => {
    expect(tests.map((t) => t.name)).toEqual([
      'TEST 1',
      'TEST 2',
      'TEST 3',
      'TEST 1024',
      'TEST SHA(abc)',
    ]);
    expect(tests[3]?.message).toHaveLength(2 * 1023);
  });
  for (const t of tests) {
    it(t.name, () => {
      const secretKey = hex(t.secretKey);
      const message = hex(t.message);
      expect(toHex(signingPublicKey(secretKey))).toBe(t.publicKey);
      expect(toHex(sign(secretKey, message))).toBe(t.signature);
      expect(verify(hex(t.publicKey), message, hex(t.signature))).toBe(true);
      const altered = hex(t.signature);
      altered[0]! ^= 1;
      expect(verify(hex(t.publicKey), message, altered)).toBe(false);
    });
  }
});
