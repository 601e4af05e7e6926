/**
 * randomBytes on the node backend (_random-node.ts): small requests come from a pool refilled
 * 4 KiB at a time, so these cross many refills and check that no byte is handed out twice, that
 * none comes out wiped, and that every result owns its ArrayBuffer.
 */
import { describe, expect, it, vi } from 'vitest';
import '../src/_node.ts';
import { native } from '../src/_native.ts';
import { toBase64Url } from '../src/codec.ts';
import { randomBytes } from '../src/random.ts';

describe('randomBytes on node:crypto', () => {
  it('is what random.ts uses once the node backend is loaded', () => {
    const spy = vi.spyOn(native, 'randomBytes');
    randomBytes(12);
    expect(spy).toHaveBeenCalledWith(12);
    spy.mockRestore();
  });

  it('returns n fresh bytes in their own array, across pool refills and above the pooled size', () => {
    for (const n of [0, 1, 12, 16, 32, 63, 64, 65, 4096, 4097, 200_000]) {
      for (let i = 0; i < 3; i++) {
        const out = randomBytes(n);
        expect(out).toHaveLength(n);
        expect(out.byteOffset).toBe(0);
        expect(out.buffer.byteLength).toBe(n);
      }
    }
  });

  it('never hands out the same bytes twice, nor wiped ones (20 000 nonces, ~60 refills)', () => {
    const seen = new Set<string>();
    let zeros = 0;
    for (let i = 0; i < 20_000; i++) {
      const nonce = randomBytes(12);
      seen.add(toBase64Url(nonce));
      if (nonce.every((b) => b === 0)) zeros++;
    }
    expect(seen.size).toBe(20_000);
    expect(zeros).toBe(0);
  });

  it('gives every byte value about equally often', () => {
    const counts = new Array<number>(256).fill(0);
    for (let i = 0; i < 4000; i++) for (const b of randomBytes(25)) counts[b]!++;
    // 100 000 bytes: 390.6 expected per value; 250 and 550 are over 7 standard deviations out.
    expect(Math.min(...counts)).toBeGreaterThan(250);
    expect(Math.max(...counts)).toBeLessThan(550);
  });
});
