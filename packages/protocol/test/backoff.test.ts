import { describe, expect, it } from 'vitest';
import { backoffDelay } from '../src/backoff.ts';

describe('backoffDelay', () => {
  const opts = { baseMs: 100, maxMs: 1000 };
  it('doubles from the base up to the cap', () => {
    expect([0, 1, 2, 3, 4, 5, 60].map((a) => backoffDelay(a, opts))).toEqual([
      100, 200, 400, 800, 1000, 1000, 1000,
    ]);
  });
  it('jitters within [0, d] (full) and [d/2, d] (equal)', () => {
    expect(backoffDelay(2, { ...opts, jitter: 'full', random: () => 0 })).toBe(0);
    expect(backoffDelay(2, { ...opts, jitter: 'full', random: () => 0.5 })).toBe(200);
    expect(backoffDelay(2, { ...opts, jitter: 'equal', random: () => 0 })).toBe(200);
    expect(backoffDelay(2, { ...opts, jitter: 'equal', random: () => 0.999 })).toBeCloseTo(399.8);
    for (let i = 0; i < 100; i++) {
      const d = backoffDelay(9, { ...opts, jitter: 'full' });
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThanOrEqual(1000);
    }
  });
  it('refuses nonsense', () => {
    expect(() => backoffDelay(-1, opts)).toThrow(RangeError);
    expect(() => backoffDelay(0.5, opts)).toThrow(RangeError);
    expect(() => backoffDelay(0, { baseMs: -1, maxMs: 5 })).toThrow(RangeError);
    expect(() => backoffDelay(0, { baseMs: 1, maxMs: Infinity })).toThrow(RangeError);
    expect(backoffDelay(0, { baseMs: 10, maxMs: 5 })).toBe(5);
  });
});
