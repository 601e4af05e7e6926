/**
 * Incremental SHA-256 (hash.ts): the FIPS 180-4 example digests, the same digest however the
 * input is split, on both backends (noble here, node:crypto once a `node` entry is loaded), and a
 * finished hasher refuses more input.
 */
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { native } from '../src/_native.ts';
import { createSha256 } from '../src/hash.ts';
import { toHex as hex } from './_hex.ts';

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

function digestOf(pieces: Uint8Array[]): string {
  const h = createSha256();
  for (const p of pieces) h.update(p);
  return hex(h.digest());
}

function checks(): void {
  // FIPS 180-2 appendix B.1 and B.2, and the empty input.
  expect(digestOf([utf8('abc')])).toBe(
    'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
  );
  expect(
    digestOf([utf8('abcdbcdecdefdefgefghfghighij'), utf8('hijkijkljklmklmnlmnomnopnopq')]),
  ).toBe('248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1');
  expect(digestOf([])).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }), (pieces) => {
      const whole = new Uint8Array(pieces.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of pieces) {
        whole.set(p, at);
        at += p.length;
      }
      expect(digestOf(pieces)).toBe(hex(nobleSha256(whole)));
    }),
    { numRuns: 200 },
  );
}

describe('createSha256', () => {
  it('gives the FIPS digests however the input is split (noble)', () => {
    expect(native.sha256Stream).toBeUndefined();
    checks();
  });

  it('gives the same digests on node:crypto', async () => {
    await import('../src/node/hash.ts');
    expect(native.sha256Stream).toBeTypeOf('function');
    checks();
  });

  it('refuses input after the digest and non-bytes', () => {
    const h = createSha256();
    expect(() => h.update('abc' as unknown as Uint8Array)).toThrow(TypeError);
    h.digest();
    expect(() => h.update(utf8('x'))).toThrow(TypeError);
    expect(() => h.digest()).toThrow(TypeError);
  });
});
