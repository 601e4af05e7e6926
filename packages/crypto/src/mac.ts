/**
 * SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104, FIPS 198-1), via @noble/hashes; SHA-256 on
 * node:crypto under the `node` export condition (_sha256-node.ts). Compare MACs with
 * `constantTimeEqual`, never with `===` or a loop that exits early.
 */
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';
import { assertBytes } from './_assert.ts';
import { native } from './_native.ts';

/**
 * Computes HMAC-SHA256.
 *
 * @param key - MAC key of any length (keys longer than 64 bytes are hashed first, RFC 2104 §2).
 * @param data - Message.
 * @returns The 32-byte tag.
 * @throws {TypeError} if `key` or `data` is not a Uint8Array.
 */
export function hmacSha256(key: Uint8Array, data: Uint8Array): Uint8Array {
  assertBytes(key, 'key');
  assertBytes(data, 'data');
  return hmac(nobleSha256, key, data);
}

/**
 * Computes SHA-256.
 *
 * @param data - Message.
 * @returns The 32-byte digest.
 * @throws {TypeError} if `data` is not a Uint8Array.
 */
export function sha256(data: Uint8Array): Uint8Array {
  assertBytes(data, 'data');
  return native.sha256 === undefined ? nobleSha256(data) : native.sha256(data);
}
