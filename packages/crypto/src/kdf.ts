/**
 * HKDF with SHA-256 (RFC 5869 §2.2 extract, §2.3 expand), via @noble/hashes.
 */
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { assertBytes, assertInteger } from './_assert.ts';

/** RFC 5869 §2.3: L <= 255 * HashLen. */
const MAX_LENGTH = 255 * 32;

/**
 * Derives `length` bytes of keying material with HKDF-SHA256.
 *
 * @param ikm - Input keying material.
 * @param salt - Optional salt; `undefined` (or empty) means 32 zero bytes (RFC 5869 §2.2).
 * @param info - Context and application specific information; use a distinct, versioned string
 *   per purpose.
 * @param length - Output length in bytes, `0..8160`.
 * @returns The output keying material (OKM).
 * @throws {TypeError} if `ikm`, `info` or a given `salt` is not a Uint8Array, or `length` is not a
 *   number.
 * @throws {RangeError} if `length` is not an integer in `[0, 8160]`.
 */
export function hkdfSha256(
  ikm: Uint8Array,
  salt: Uint8Array | undefined,
  info: Uint8Array,
  length: number,
): Uint8Array {
  assertBytes(ikm, 'ikm');
  if (salt !== undefined) {
    assertBytes(salt, 'salt');
  }
  assertBytes(info, 'info');
  assertInteger(length, 0, MAX_LENGTH, 'length');
  return hkdf(sha256, ikm, salt, info, length);
}
