/**
 * Byte codecs: base64url (RFC 4648 §5, without padding), strict UTF-8 (WHATWG Encoding) and
 * concatenation. Every byte value that crosses the wire goes through this one codec.
 *
 * Decoding is strict so that each byte string has exactly one accepted text form: padding,
 * characters outside the URL-safe alphabet, impossible lengths and non-zero trailing bits are all
 * rejected (RFC 4648 §3.5 "canonical encoding").
 *
 * Under the `node` export condition base64url runs on node's Buffer codec (_base64-node.ts), which
 * accepts exactly the same texts; the loops here are the portable code and give the errors.
 */
import { assertBytes, assertString } from './_assert.ts';
import { native } from './_native.ts';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** Character code -> 6-bit value, or -1 for characters outside the alphabet. */
const DECODE_TABLE: Int8Array = (() => {
  const table = new Int8Array(128).fill(-1);
  for (let i = 0; i < ALPHABET.length; i++) {
    table[ALPHABET.charCodeAt(i)] = i;
  }
  return table;
})();

/** Matches a lone (unpaired) UTF-16 surrogate, which has no UTF-8 encoding. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Whether `text` has no lone surrogate: ES2024 `isWellFormed` where present (native), else the regex. */
function isWellFormed(text: string): boolean {
  const check = (text as { isWellFormed?: () => boolean }).isWellFormed;
  return typeof check === 'function' ? check.call(text) : !LONE_SURROGATE.test(text);
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Encodes bytes as base64url (RFC 4648 §5) without `=` padding.
 *
 * @param bytes - The bytes to encode.
 * @returns The base64url text, `ceil(4 * n / 3)` characters long.
 * @throws {TypeError} if `bytes` is not a Uint8Array.
 */
export function toBase64Url(bytes: Uint8Array): string {
  assertBytes(bytes, 'bytes');
  if (native.base64 !== undefined) return native.base64.encode(bytes);
  let out = '';
  let i = 0;
  for (; i + 3 <= bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out +=
      ALPHABET[(n >>> 18) & 63]! +
      ALPHABET[(n >>> 12) & 63]! +
      ALPHABET[(n >>> 6) & 63]! +
      ALPHABET[n & 63]!;
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i]! << 16;
    out += ALPHABET[(n >>> 18) & 63]! + ALPHABET[(n >>> 12) & 63]!;
  } else if (rest === 2) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8);
    out += ALPHABET[(n >>> 18) & 63]! + ALPHABET[(n >>> 12) & 63]! + ALPHABET[(n >>> 6) & 63]!;
  }
  return out;
}

/**
 * Decodes unpadded base64url (RFC 4648 §5) strictly: only `[A-Za-z0-9_-]`, no `=` padding, no
 * whitespace, a length that is not 1 modulo 4, and zero trailing bits (canonical form), so that
 * `toBase64Url(fromBase64Url(s)) === s` for every accepted `s`.
 *
 * @param text - The base64url text.
 * @returns The decoded bytes.
 * @throws {TypeError} if `text` is not a string or is not canonical unpadded base64url.
 */
export function fromBase64Url(text: string): Uint8Array {
  assertString(text, 'text');
  const decoded = native.base64?.decode(text);
  if (decoded !== undefined) return decoded;
  const tail = text.length % 4;
  if (tail === 1) {
    throw new TypeError('invalid base64url: impossible length');
  }
  const out = new Uint8Array(((text.length - tail) / 4) * 3 + (tail === 0 ? 0 : tail - 1));
  const sextet = (index: number): number => {
    const code = text.charCodeAt(index);
    const value = code < 128 ? DECODE_TABLE[code]! : -1;
    if (value < 0) {
      throw new TypeError('invalid base64url: unexpected character');
    }
    return value;
  };
  let o = 0;
  let i = 0;
  for (; i + 4 <= text.length; i += 4) {
    const n = (sextet(i) << 18) | (sextet(i + 1) << 12) | (sextet(i + 2) << 6) | sextet(i + 3);
    out[o++] = n >>> 16;
    out[o++] = (n >>> 8) & 0xff;
    out[o++] = n & 0xff;
  }
  if (tail === 2) {
    const n = (sextet(i) << 18) | (sextet(i + 1) << 12);
    if ((n & 0xffff) !== 0) {
      throw new TypeError('invalid base64url: non-zero trailing bits');
    }
    out[o] = n >>> 16;
  } else if (tail === 3) {
    const n = (sextet(i) << 18) | (sextet(i + 1) << 12) | (sextet(i + 2) << 6);
    if ((n & 0xff) !== 0) {
      throw new TypeError('invalid base64url: non-zero trailing bits');
    }
    out[o] = n >>> 16;
    out[o + 1] = (n >>> 8) & 0xff;
  }
  return out;
}

/**
 * Encodes a string as UTF-8. Unlike a bare `TextEncoder`, it refuses strings holding a lone
 * surrogate instead of silently replacing it with U+FFFD: two different strings must never encode
 * to the same bytes when they are bound into additional data or signatures.
 *
 * @param text - A well-formed UTF-16 string.
 * @returns Its UTF-8 bytes.
 * @throws {TypeError} if `text` is not a string or contains a lone surrogate.
 */
export function utf8Encode(text: string): Uint8Array {
  assertString(text, 'text');
  if (!isWellFormed(text)) {
    throw new TypeError('text contains a lone surrogate');
  }
  return encoder.encode(text);
}

/**
 * Decodes UTF-8 strictly (a byte-order mark is kept as U+FEFF, not stripped).
 *
 * @param bytes - UTF-8 bytes.
 * @returns The decoded string.
 * @throws {TypeError} if `bytes` is not a Uint8Array or is not valid UTF-8.
 */
export function utf8Decode(bytes: Uint8Array): string {
  assertBytes(bytes, 'bytes');
  try {
    return decoder.decode(bytes);
  } catch {
    throw new TypeError('invalid UTF-8');
  }
}

/**
 * Concatenates byte arrays into a new array (the inputs are not retained).
 *
 * @param parts - The byte arrays, in order.
 * @returns A fresh Uint8Array holding all parts.
 * @throws {TypeError} if any part is not a Uint8Array.
 */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i];
    if (!(part instanceof Uint8Array)) assertBytes(part, `parts[${i}]`); // named only on failure
    length += part.length;
  }
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
