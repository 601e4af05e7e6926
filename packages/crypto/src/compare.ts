/**
 * Constant-time comparison of byte strings, for tags, MACs and fingerprints, so that the time
 * taken does not reveal the position of the first differing byte.
 */
import { assertBytes } from './_assert.ts';

/**
 * Compares two byte arrays in time that depends only on their lengths.
 *
 * @param a - First value.
 * @param b - Second value.
 * @returns `true` if both have the same length and contents; `false` otherwise (including on a
 *   length mismatch, which is not treated as an error).
 * @throws {TypeError} if either argument is not a Uint8Array.
 */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  assertBytes(a, 'a');
  assertBytes(b, 'b');
  if (a.length !== b.length) {
    return false;
  }
  let diff = 0;
  for (let i = 0; i < a.length; i++) {
    diff |= a[i]! ^ b[i]!;
  }
  return diff === 0;
}
