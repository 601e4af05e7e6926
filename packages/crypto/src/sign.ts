/**
 * Ed25519 signatures (RFC 8032 §5.1, PureEdDSA), via @noble/curves. Verification is strict
 * (RFC 8032 §5.1.7 and §5.1.3: canonical `S < L` and canonical point encodings, not ZIP-215), so
 * signatures are not malleable.
 *
 * `signWithContext` adds Latchkey's own domain separation: it signs `u32(len(context)) ||
 * context || message`, so that a signature made for one purpose (e.g. `'latchkey.v1.msgsig'`)
 * never verifies for another. A key used with contexts must not also sign raw messages.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { assertBytes, assertBytesLength, assertString } from './_assert.ts';
import { lengthPrefixedString } from './_encoding.ts';
import { concatBytes } from './codec.ts';
import { randomBytes } from './random.ts';

const SECRET_KEY_LENGTH = 32;
const PUBLIC_KEY_LENGTH = 32;
const SIGNATURE_LENGTH = 64;

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
  return ed25519.sign(message, secretKey);
}

/**
 * Verifies an Ed25519 signature strictly (RFC 8032 §5.1.7). Never throws: malformed keys,
 * signatures of the wrong length or type, and non-canonical encodings all give `false`.
 *
 * @param publicKey - 32-byte public key.
 * @param message - The signed message.
 * @param signature - 64-byte signature.
 * @returns `true` only if the signature is valid for this key and message.
 */
export function verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (
    !(publicKey instanceof Uint8Array) ||
    !(message instanceof Uint8Array) ||
    !(signature instanceof Uint8Array) ||
    publicKey.length !== PUBLIC_KEY_LENGTH ||
    signature.length !== SIGNATURE_LENGTH
  ) {
    return false;
  }
  try {
    return ed25519.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
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
  return ed25519.sign(contextMessage(context, message), secretKey);
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

// --- Platform Ed25519 (WebCrypto) -------------------------------------------------------------
// The same signatures as above, computed by the platform where WebCrypto has Ed25519 (Node,
// current browsers: 12-16x faster than pure JS here), else by noble. Both implement RFC 8032;
// test/sign-backends.test.ts checks that they agree, including on the RFC vectors.

type Ed25519Backend = 'webcrypto' | 'noble';
let ed25519Selected: Ed25519Backend | 'auto' = 'auto';
/** Set once WebCrypto has refused Ed25519 (an older browser): noble from then on. */
let webcryptoEd25519Broken = false;

interface CachedEdKey {
  readonly raw: Uint8Array;
  readonly key: Promise<CryptoKey>;
}
const edSecretCache = new WeakMap<Uint8Array, CachedEdKey>();
const edPublicCache = new WeakMap<Uint8Array, CachedEdKey>();

function edSubtle(): SubtleCrypto | undefined {
  if (ed25519Selected === 'noble' || webcryptoEd25519Broken) return undefined;
  return (globalThis.crypto as Crypto | undefined)?.subtle;
}

/** Which Ed25519 implementation the async functions use. */
export function ed25519Backend(): Ed25519Backend {
  return edSubtle() === undefined ? 'noble' : 'webcrypto';
}

/** Forces an Ed25519 backend for the async functions (tests, benchmarks). */
export function setEd25519Backend(backend: Ed25519Backend | 'auto'): void {
  if (backend !== 'auto' && backend !== 'webcrypto' && backend !== 'noble') {
    throw new RangeError("backend must be 'webcrypto', 'noble' or 'auto'");
  }
  ed25519Selected = backend;
}

function cachedKey(cache: WeakMap<Uint8Array, CachedEdKey>, bytes: Uint8Array, load: (raw: Uint8Array<ArrayBuffer>) => Promise<CryptoKey>): Promise<CryptoKey> {
  const hit = cache.get(bytes);
  if (hit !== undefined && hit.raw.length === bytes.length && hit.raw.every((b, i) => b === bytes[i])) return hit.key;
  const raw = new Uint8Array(bytes);
  const key = load(raw);
  cache.set(bytes, { raw, key });
  key.catch(() => cache.delete(bytes));
  return key;
}

const b64u = (b: Uint8Array): string => {
  let s = '';
  for (const x of b) s += String.fromCharCode(x);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
};

/**
 * Async {@link sign}: the same signature (Ed25519 is deterministic), computed by WebCrypto
 * where available.
 * @throws {TypeError|RangeError} as {@link sign}.
 */
export async function signAsync(secretKey: Uint8Array, message: Uint8Array): Promise<Uint8Array> {
  assertBytesLength(secretKey, SECRET_KEY_LENGTH, 'secretKey');
  assertBytes(message, 'message');
  const api = edSubtle();
  if (api !== undefined) {
    try {
      const key = await cachedKey(edSecretCache, secretKey, (raw) =>
        api.importKey(
          'jwk',
          { kty: 'OKP', crv: 'Ed25519', d: b64u(raw), x: b64u(ed25519.getPublicKey(raw)) },
          { name: 'Ed25519' },
          false,
          ['sign'],
        ),
      );
      return new Uint8Array(await api.sign({ name: 'Ed25519' }, key, new Uint8Array(message)));
    } catch {
      if (ed25519Selected === 'webcrypto') throw new TypeError('WebCrypto Ed25519 is not available');
      webcryptoEd25519Broken = true;
    }
  }
  return ed25519.sign(message, secretKey);
}

/** Async {@link verify}, by WebCrypto where available. Never throws. */
export async function verifyAsync(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): Promise<boolean> {
  try {
    assertBytes(message, 'message');
    assertBytesLength(publicKey, PUBLIC_KEY_LENGTH, 'publicKey');
    assertBytesLength(signature, SIGNATURE_LENGTH, 'signature');
  } catch {
    return false;
  }
  const api = edSubtle();
  if (api !== undefined) {
    let key: CryptoKey;
    try {
      key = await cachedKey(edPublicCache, publicKey, (raw) => api.importKey('raw', raw, { name: 'Ed25519' }, false, ['verify']));
    } catch {
      // Some platforms refuse an invalid point at import: then noble decides.
      return verify(publicKey, message, signature);
    }
    try {
      return await api.verify({ name: 'Ed25519' }, key, new Uint8Array(signature), new Uint8Array(message));
    } catch {
      return false;
    }
  }
  return verify(publicKey, message, signature);
}

/**
 * Async {@link signWithContext}, by WebCrypto where available.
 * @throws {TypeError|RangeError} as {@link signWithContext}.
 */
export function signWithContextAsync(secretKey: Uint8Array, context: string, message: Uint8Array): Promise<Uint8Array> {
  assertBytesLength(secretKey, SECRET_KEY_LENGTH, 'secretKey');
  return signAsync(secretKey, contextMessage(context, message));
}

/** Async {@link verifyWithContext}, by WebCrypto where available. Never throws. */
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
