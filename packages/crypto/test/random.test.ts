import { describe, expect, it } from 'vitest';
import { constantTimeEqual } from '../src/compare.ts';
import { randomBytes } from '../src/random.ts';

describe('randomBytes', () => {
  it('returns n fresh bytes, also above the 65 536-byte getRandomValues limit', () => {
    expect(randomBytes(0)).toHaveLength(0);
    const a = randomBytes(32);
    expect(a).toHaveLength(32);
    expect(constantTimeEqual(a, randomBytes(32))).toBe(false);
    const big = randomBytes(200_000);
    expect(big).toHaveLength(200_000);
    expect(big.subarray(150_000).some((b) => b !== 0)).toBe(true);
  });

  it('rejects bad sizes', () => {
    expect(() => randomBytes(-1)).toThrow(RangeError);
    expect(() => randomBytes(1.5)).toThrow(RangeError);
    expect(() => randomBytes('8' as unknown as number)).toThrow(TypeError);
  });
});
