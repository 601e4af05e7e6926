/**
 * Internal injective encodings for additional data, signature inputs and KDF info strings.
 *
 * Variable-length fields are prefixed by their length as a u32 big-endian; integers are written
 * fixed-width big-endian. Concatenating such fields in a fixed order after a fixed domain string
 * gives an encoding from which every field can be read back, so two different inputs never map to
 * the same bytes (the property the envelope's additional data and the signed message rely on).
 */
import { assertInteger } from './_assert.ts';
import { concatBytes, utf8Encode } from './codec.ts';

const U32_MAX = 0xffff_ffff;

// Bytes written by hand: a DataView (and a BigInt for u64) per integer cost more than the rest of
// an envelope's additional data together.

/** Writes `value` (in [0, 2^32 - 1]) big-endian at `out[at..at+4]`. */
function writeU32(out: Uint8Array, at: number, value: number): void {
  out[at] = value >>> 24;
  out[at + 1] = value >>> 16;
  out[at + 2] = value >>> 8;
  out[at + 3] = value;
}

/** u32 big-endian. @throws {RangeError} if `value` is not an integer in [0, 2^32 - 1]. */
export function u32(value: number, name = 'value'): Uint8Array {
  assertInteger(value, 0, U32_MAX, name);
  const out = new Uint8Array(4);
  writeU32(out, 0, value);
  return out;
}

/** u64 big-endian. @throws {RangeError} if `value` is not an integer in [0, 2^53 - 1]. */
export function u64(value: number, name = 'value'): Uint8Array {
  assertInteger(value, 0, Number.MAX_SAFE_INTEGER, name);
  const out = new Uint8Array(8);
  writeU32(out, 0, Math.floor(value / 2 ** 32));
  writeU32(out, 4, value >>> 0);
  return out;
}

/** u32 length || bytes. @throws {RangeError} if `bytes` is 2^32 bytes or longer. */
export function lengthPrefixed(bytes: Uint8Array): Uint8Array {
  return concatBytes(u32(bytes.length, 'length'), bytes);
}

/** u32 length || UTF-8 bytes of `text`. @throws {TypeError} on a lone surrogate. */
export function lengthPrefixedString(text: string): Uint8Array {
  return lengthPrefixed(utf8Encode(text));
}
