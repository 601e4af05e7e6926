import { describe, expect, it } from 'vitest';
import { constantTimeEqual } from '../src/compare.ts';

describe('constantTimeEqual', () => {
  it('compares contents and treats a length mismatch as unequal', () => {
    expect(constantTimeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2]))).toBe(true);
    expect(constantTimeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 3]))).toBe(false);
    expect(constantTimeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2, 0]))).toBe(false);
    expect(constantTimeEqual(new Uint8Array(0), new Uint8Array(0))).toBe(true);
    expect(() => constantTimeEqual([1] as unknown as Uint8Array, new Uint8Array(1))).toThrow(
      TypeError,
    );
  });
});
