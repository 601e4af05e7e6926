/**
 * Cryptographically secure random bytes from the platform CSPRNG (W3C WebCrypto
 * `crypto.getRandomValues`), available in browsers and in Node 20+ as `globalThis.crypto`; under
 * the `node` export condition node:crypto's, small requests served from a pool (_random-node.ts).
 */
import { assertInteger } from './_assert.ts';
import { native } from './_native.ts';

/** `getRandomValues` fills at most 65 536 bytes per call (WebCrypto §10.1.1). */
const MAX_CHUNK = 65_536;

/**
 * Returns `n` fresh random bytes.
 *
 * @param n - How many bytes, an integer in `[0, 2^31 - 1]`.
 * @returns A new Uint8Array of length `n`.
 * @throws {TypeError} if `n` is not a number or no WebCrypto CSPRNG is available.
 * @throws {RangeError} if `n` is not a non-negative integer.
 */
export function randomBytes(n: number): Uint8Array {
  assertInteger(n, 0, 0x7fff_ffff, 'n');
  if (native.randomBytes !== undefined) return native.randomBytes(n);
  const crypto = globalThis.crypto as Crypto | undefined;
  if (crypto === undefined || typeof crypto.getRandomValues !== 'function') {
    throw new TypeError('crypto.getRandomValues is not available');
  }
  const out = new Uint8Array(n);
  for (let offset = 0; offset < n; offset += MAX_CHUNK) {
    crypto.getRandomValues(out.subarray(offset, Math.min(n, offset + MAX_CHUNK)));
  }
  return out;
}
