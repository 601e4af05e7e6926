/**
 * X25519 Diffie-Hellman (RFC 7748 §5 and §6.1), via @noble/curves, or node:crypto under the
 * `node` export condition (_x25519-node.ts, through the native slot); the DH function of
 * DHKEM(X25519, HKDF-SHA256) in RFC 9180 §7.1.
 *
 * Public keys are decoded as RFC 7748 §5 requires (the top bit is masked and non-canonical
 * u-coordinates are reduced). A peer public key of small order, which would give the all-zero
 * shared secret, is rejected, as RFC 7748 §6.1 allows and RFC 9180 §7.1.4 requires.
 */
import { x25519 } from '@noble/curves/ed25519.js';
import { assertBytesLength } from './_assert.ts';
import { native } from './_native.ts';
import { randomBytes } from './random.ts';

const KEY_LENGTH = 32;

/**
 * Computes the X25519 public key `X25519(secret, 9)` (RFC 7748 §6.1).
 *
 * @param secret - 32-byte secret key (clamped internally, RFC 7748 §5).
 * @returns The 32-byte public key.
 * @throws {TypeError} if `secret` is not a Uint8Array.
 * @throws {RangeError} if `secret` is not 32 bytes.
 */
export function x25519PublicKey(secret: Uint8Array): Uint8Array {
  assertBytesLength(secret, KEY_LENGTH, 'secret');
  return native.x25519 ? native.x25519.publicKey(secret) : x25519.getPublicKey(secret);
}

/**
 * Computes the X25519 shared secret `X25519(secret, publicKey)` (RFC 7748 §6.1).
 * Feed it to a KDF; never use it as a key directly.
 *
 * @param secret - Our 32-byte secret key.
 * @param publicKey - The peer's 32-byte public key.
 * @returns The 32-byte shared secret.
 * @throws {TypeError} if an argument is not a Uint8Array.
 * @throws {RangeError} if an argument is not 32 bytes, or `publicKey` is a low-order point (the
 *   result would be all zeros).
 */
export function x25519SharedSecret(secret: Uint8Array, publicKey: Uint8Array): Uint8Array {
  assertBytesLength(secret, KEY_LENGTH, 'secret');
  assertBytesLength(publicKey, KEY_LENGTH, 'publicKey');
  let shared: Uint8Array;
  try {
    shared = native.x25519
      ? native.x25519.sharedSecret(secret, publicKey)
      : x25519.getSharedSecret(secret, publicKey);
  } catch {
    throw new RangeError('publicKey is a low-order point');
  }
  // Defence in depth: noble already refuses these, but RFC 7748 §6.1's check is cheap.
  let acc = 0;
  for (const byte of shared) {
    acc |= byte;
  }
  if (acc === 0) {
    throw new RangeError('publicKey is a low-order point');
  }
  return shared;
}

/**
 * Generates an X25519 key pair from 32 bytes of `crypto.getRandomValues`.
 *
 * @returns `secretKey` (32 bytes) and `publicKey` (32 bytes).
 */
export function generateX25519KeyPair(): { secretKey: Uint8Array; publicKey: Uint8Array } {
  const secretKey = randomBytes(KEY_LENGTH);
  return { secretKey, publicKey: x25519PublicKey(secretKey) };
}
