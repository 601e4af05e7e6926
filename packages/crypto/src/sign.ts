/**
 * Ed25519 signatures (RFC 8032 §5.1, PureEdDSA). Verification is strict, and the same on every
 * backend: our own pre-check (_ed25519-strict.ts) refuses, before any backend sees them,
 * - public keys that are not canonical (y >= p, or x = 0 with the sign bit set), that do not
 *   decode to a point (RFC 8032 §5.1.3), that have small order (the 8-torsion points: a signature
 *   R = identity, S = 0 then verifies for every message) or a torsion component;
 * - signatures whose S is not below L (§5.1.7: not malleable), whose R is not canonical or is a
 *   small-order point.
 * The backends then check the equation: node:crypto and WebCrypto (OpenSSL, BoringSSL) the
 * cofactorless one, noble the cofactored one, followed by a check that R has no torsion
 * component. For keys that pass the pre-check they give the same answer on every input.
 *
 * Backends: node:crypto where the `node` export condition loaded it (src/node/; synchronous, so
 * `sign` and `verify` use it too), else for the async functions WebCrypto where the platform has
 * Ed25519, else @noble/curves (pure JS). Ed25519 is deterministic: all give the same signatures.
 *
 * `signWithContext` adds Latchkey's own domain separation: it signs `u32(len(context)) ||
 * context || message`, so that a signature made for one purpose (e.g. `'latchkey.v1.msgsig'`)
 * never verifies for another. A key used with contexts must not also sign raw messages.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { assertBytes, assertBytesLength, assertString } from './_assert.ts';
import { lengthPrefixedString } from './_encoding.ts';
import { nobleVerify, passesPrecheck } from './_ed25519-strict.ts';
import { checkBackend, native } from './_native.ts';
import type { Backend } from './_native.ts';
import { webcryptoEd25519Sign, webcryptoEd25519Verify } from './_sign-webcrypto.ts';
import { concatBytes } from './codec.ts';
import { randomBytes } from './random.ts';

export { isValidSigningPublicKey } from './_ed25519-strict.ts';

const SECRET_KEY_LENGTH = 32;

/** Which Ed25519 implementation runs: node:crypto, the platform's WebCrypto, or @noble/curves. */
export type Ed25519Backend = Backend;

let selected: Ed25519Backend | 'auto' = 'auto';
/** Set once WebCrypto has refused Ed25519 (an older browser): noble from then on. */
let webcryptoBroken = false;

function subtle(): SubtleCrypto | undefined {
  return webcryptoBroken ? undefined : (globalThis.crypto as Crypto | undefined)?.subtle;
}

/**
 * Reports which backend the async functions use now: the one forced by
 * {@link setEd25519Backend}, or under `'auto'` node:crypto when loaded, else WebCrypto when
 * `crypto.subtle` exists (and has not refused Ed25519), else noble. The synchronous functions use
 * node:crypto when this says `'node'`, noble otherwise.
 */
export function ed25519Backend(): Ed25519Backend {
  if (selected === 'node' || selected === 'noble') return selected;
  if (selected === 'auto' && native.ed25519 !== undefined) return 'node';
  return subtle() === undefined ? 'noble' : 'webcrypto';
}

/**
 * Forces an Ed25519 backend, or returns to automatic choice with `'auto'` (tests, benchmarks).
 *
 * @throws {RangeError} if `backend` is not `'node'`, `'webcrypto'`, `'noble'` or `'auto'`.
 * @throws {TypeError} if `'node'` is asked for but node:crypto is not loaded (not a `node` entry).
 */
export function setEd25519Backend(backend: Ed25519Backend | 'auto'): void {
  checkBackend(backend, native.ed25519);
  selected = backend;
}

/** Signs on the synchronous backend: node:crypto if selected, else noble. */
function signNow(secretKey: Uint8Array, message: Uint8Array): Uint8Array {
  const node = ed25519Backend() === 'node' ? native.ed25519 : undefined;
  return node === undefined ? ed25519.sign(message, secretKey) : node.sign(secretKey, message);
}

/** The equation on the synchronous backend. Call only after `passesPrecheck`. */
function verifyNow(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  const node = ed25519Backend() === 'node' ? native.ed25519 : undefined;
  return node === undefined
    ? nobleVerify(publicKey, message, signature)
    : node.verify(publicKey, message, signature);
}

/**
 * Generates a new Ed25519 key pair from 32 bytes of `crypto.getRandomValues`.
 *
 * @returns `secretKey` (the 32-byte RFC 8032 seed) and `publicKey` (32 bytes).
 */
export function generateSigningKeyPair(): { secretKey: Uint8Array; publicKey: Uint8Array } {
  const secretKey = randomBytes(SECRET_KEY_LENGTH);
  return { secretKey, publicKey: ed25519.getPublicKey(secretKey) };
}

/**
 * Derives the public key of an Ed25519 secret key (RFC 8032 §5.1.5).
 *
 * @param secretKey - 32-byte secret key (seed).
 * @returns The 32-byte public key.
 * @throws {TypeError} if `secretKey` is not a Uint8Array.
 * @throws {RangeError} if `secretKey` is not 32 bytes.
 */
export function signingPublicKey(secretKey: Uint8Array): Uint8Array {
  assertBytesLength(secretKey, SECRET_KEY_LENGTH, 'secretKey');
  return ed25519.getPublicKey(secretKey);
}

/**
 * Signs a message with Ed25519 (RFC 8032 §5.1.6). Deterministic.
 *
 * @param secretKey - 32-byte secret key (seed).
 * @param message - Message of any length.
 * @returns The 64-byte signature.
 * @throws {TypeError} if an argument is not a Uint8Array.
 * @throws {RangeError} if `secretKey` is not 32 bytes.
 */
export function sign(secretKey: Uint8Array, message: Uint8Array): Uint8Array {
  assertBytesLength(secretKey, SECRET_KEY_LENGTH, 'secretKey');
  assertBytes(message, 'message');
  return signNow(secretKey, message);
}

/**
 * Verifies an Ed25519 signature strictly (RFC 8032 §5.1.7 and the rules in this module's header).
 * Never throws: malformed keys, keys that fail {@link isValidSigningPublicKey}, signatures of the
 * wrong length or type, non-canonical encodings and small-order R all give `false`.
 *
 * @param publicKey - 32-byte public key.
 * @param message - The signed message.
 * @param signature - 64-byte signature.
 * @returns `true` only if the signature is valid for this key and message.
 */
export function verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  return passesPrecheck(publicKey, message, signature) && verifyNow(publicKey, message, signature);
}

function contextMessage(context: string, message: Uint8Array): Uint8Array {
  assertString(context, 'context');
  if (context.length === 0) {
    throw new RangeError('context must not be empty');
  }
  assertBytes(message, 'message');
  return concatBytes(lengthPrefixedString(context), message);
}

/**
 * Signs `u32(len(context)) || UTF-8(context) || message` with Ed25519: a signature bound to one
 * purpose. Latchkey contexts are versioned strings such as `'latchkey.v1.msgsig'`.
 *
 * @param secretKey - 32-byte secret key (seed).
 * @param context - Non-empty purpose string.
 * @param message - Message of any length.
 * @returns The 64-byte signature.
 * @throws {TypeError} if `context` is not a well-formed string or another argument is not a
 *   Uint8Array.
 * @throws {RangeError} if `secretKey` is not 32 bytes or `context` is empty.
 */
export function signWithContext(
  secretKey: Uint8Array,
  context: string,
  message: Uint8Array,
): Uint8Array {
  assertBytesLength(secretKey, SECRET_KEY_LENGTH, 'secretKey');
  return signNow(secretKey, contextMessage(context, message));
}

/**
 * Verifies a signature made by {@link signWithContext} for the same context. Never throws.
 *
 * @param publicKey - 32-byte public key.
 * @param context - The purpose string the signer used.
 * @param message - The signed message.
 * @param signature - 64-byte signature.
 * @returns `true` only if the signature is valid for this key, context and message.
 */
export function verifyWithContext(
  publicKey: Uint8Array,
  context: string,
  message: Uint8Array,
  signature: Uint8Array,
): boolean {
  let signed: Uint8Array;
  try {
    signed = contextMessage(context, message);
  } catch {
    return false;
  }
  return verify(publicKey, signed, signature);
}

/**
 * Async {@link sign}: the same signature (Ed25519 is deterministic), by the selected backend.
 * @throws {TypeError|RangeError} as {@link sign}.
 * @throws {TypeError} if WebCrypto is forced but the platform has no Ed25519.
 */
export async function signAsync(secretKey: Uint8Array, message: Uint8Array): Promise<Uint8Array> {
  assertBytesLength(secretKey, SECRET_KEY_LENGTH, 'secretKey');
  assertBytes(message, 'message');
  const api = subtle();
  if (ed25519Backend() === 'webcrypto' && api !== undefined) {
    try {
      return await webcryptoEd25519Sign(api, secretKey, message);
    } catch {
      if (selected === 'webcrypto') throw new TypeError('WebCrypto Ed25519 is not available');
      webcryptoBroken = true;
    }
  }
  return signNow(secretKey, message);
}

/** Async {@link verify} (the same strict rules), by the selected backend. Never throws. */
export async function verifyAsync(
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  if (!passesPrecheck(publicKey, message, signature)) return false;
  const api = subtle();
  if (ed25519Backend() === 'webcrypto' && api !== undefined) {
    return webcryptoEd25519Verify(api, publicKey, message, signature);
  }
  return verifyNow(publicKey, message, signature);
}

/**
 * Async {@link signWithContext}, by the selected backend.
 * @throws {TypeError|RangeError} as {@link signWithContext}.
 */
export function signWithContextAsync(
  secretKey: Uint8Array,
  context: string,
  message: Uint8Array,
): Promise<Uint8Array> {
  assertBytesLength(secretKey, SECRET_KEY_LENGTH, 'secretKey');
  return signAsync(secretKey, contextMessage(context, message));
}

/** Async {@link verifyWithContext}, by the selected backend. Never throws. */
export async function verifyWithContextAsync(
  publicKey: Uint8Array,
  context: string,
  message: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  let signed: Uint8Array;
  try {
    signed = contextMessage(context, message);
  } catch {
    return false;
  }
  return verifyAsync(publicKey, signed, signature);
}
