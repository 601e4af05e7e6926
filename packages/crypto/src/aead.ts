/**
 * AES-256-GCM authenticated encryption (NIST SP 800-38D) with a 96-bit nonce and a 128-bit tag
 * appended to the ciphertext, as in RFC 5116 §5.2 (AEAD_AES_256_GCM).
 *
 * Two interchangeable backends compute the same function: the platform's WebCrypto
 * (`crypto.subtle`, hardware-accelerated, used whenever it exists) and @noble/ciphers `gcm` (pure
 * JS, for contexts without `crypto.subtle`, e.g. a page served over plain HTTP). Imported
 * WebCrypto keys are cached per key array; a cached entry is reused only while the array still
 * holds the same bytes.
 */
import { gcm } from '@noble/ciphers/aes.js';
import { assertBytes, assertBytesLength } from './_assert.ts';
import { AuthenticationError } from './_errors.ts';
import { constantTimeEqual } from './compare.ts';

export { AuthenticationError } from './_errors.ts';

/** Which AES-GCM implementation runs: the platform's WebCrypto or @noble/ciphers. */
export type AeadBackend = 'webcrypto' | 'noble';

const KEY_LENGTH = 32;
const NONCE_LENGTH = 12;
const TAG_LENGTH = 16;

let selected: AeadBackend | 'auto' = 'auto';

interface CachedKey {
  /** Copy of the raw key the CryptoKey was imported from, to notice a mutated array. */
  readonly raw: Uint8Array;
  readonly key: Promise<CryptoKey>;
}

const keyCache = new WeakMap<Uint8Array, CachedKey>();

function subtle(): SubtleCrypto | undefined {
  const crypto = globalThis.crypto as Crypto | undefined;
  return crypto?.subtle ?? undefined;
}

/**
 * Reports which backend `aesGcmEncrypt`/`aesGcmDecrypt` use now: the one forced by
 * {@link setAeadBackend}, or under `'auto'` WebCrypto when `crypto.subtle` exists, else noble.
 *
 * @returns `'webcrypto'` or `'noble'`.
 */
export function aeadBackend(): AeadBackend {
  if (selected !== 'auto') {
    return selected;
  }
  return subtle() === undefined ? 'noble' : 'webcrypto';
}

/**
 * Forces a backend, or returns to automatic choice with `'auto'`. Meant for tests and benchmarks;
 * both backends compute identical outputs.
 *
 * @param backend - `'webcrypto'`, `'noble'` or `'auto'`.
 * @throws {RangeError} if `backend` is not one of those values.
 * @throws {TypeError} if `'webcrypto'` is asked for but `crypto.subtle` does not exist.
 */
export function setAeadBackend(backend: AeadBackend | 'auto'): void {
  if (backend !== 'auto' && backend !== 'webcrypto' && backend !== 'noble') {
    throw new RangeError("backend must be 'webcrypto', 'noble' or 'auto'");
  }
  if (backend === 'webcrypto' && subtle() === undefined) {
    throw new TypeError('WebCrypto (crypto.subtle) is not available');
  }
  selected = backend;
}

/** Copies into a fresh ArrayBuffer-backed array: WebCrypto wants one, and it guards against a
 * caller mutating the input while an asynchronous operation runs. */
function copy(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(bytes);
}

function importKey(api: SubtleCrypto, key: Uint8Array): Promise<CryptoKey> {
  const cached = keyCache.get(key);
  if (cached !== undefined && constantTimeEqual(cached.raw, key)) {
    return cached.key;
  }
  const raw = copy(key);
  const imported = api.importKey('raw', raw, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
  keyCache.set(key, { raw, key: imported });
  imported.catch(() => keyCache.delete(key));
  return imported;
}

function gcmParams(nonce: Uint8Array, aad: Uint8Array | undefined): AesGcmParams {
  const params: AesGcmParams = { name: 'AES-GCM', iv: copy(nonce), tagLength: TAG_LENGTH * 8 };
  if (aad !== undefined) {
    params.additionalData = copy(aad);
  }
  return params;
}

function checkArgs(key: unknown, nonce: unknown, data: unknown, aad: unknown): void {
  assertBytesLength(key, KEY_LENGTH, 'key');
  assertBytesLength(nonce, NONCE_LENGTH, 'nonce');
  assertBytes(data, 'data');
  if (aad !== undefined) {
    assertBytes(aad, 'aad');
  }
}

/**
 * Encrypts with AES-256-GCM. The nonce must never repeat under one key; use a fresh random one
 * (`randomBytes(12)`) per message and rotate the key long before 2^32 messages.
 *
 * @param key - 32-byte AES-256 key.
 * @param nonce - 12-byte nonce.
 * @param plaintext - Data to encrypt.
 * @param aad - Additional data to authenticate but not encrypt (absent = empty).
 * @returns `ciphertext || tag`, 16 bytes longer than `plaintext`.
 * @throws {TypeError} if an argument is not a Uint8Array.
 * @throws {RangeError} if `key` is not 32 bytes or `nonce` is not 12 bytes.
 */
export async function aesGcmEncrypt(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  aad?: Uint8Array,
): Promise<Uint8Array> {
  checkArgs(key, nonce, plaintext, aad);
  const api = subtle();
  if (aeadBackend() === 'webcrypto' && api !== undefined) {
    const params = gcmParams(nonce, aad);
    const data = copy(plaintext);
    const cryptoKey = await importKey(api, key);
    return new Uint8Array(await api.encrypt(params, cryptoKey, data));
  }
  return gcm(key, nonce, aad).encrypt(plaintext);
}

/**
 * Decrypts and authenticates AES-256-GCM output.
 *
 * @param key - 32-byte AES-256 key.
 * @param nonce - 12-byte nonce used to encrypt.
 * @param ciphertextWithTag - `ciphertext || tag` as returned by {@link aesGcmEncrypt}.
 * @param aad - The same additional data given to encrypt (absent = empty).
 * @returns The plaintext.
 * @throws {TypeError} if an argument is not a Uint8Array.
 * @throws {RangeError} if `key` is not 32 bytes or `nonce` is not 12 bytes.
 * @throws {AuthenticationError} if the tag does not verify or the input is shorter than a tag.
 */
export async function aesGcmDecrypt(
  key: Uint8Array,
  nonce: Uint8Array,
  ciphertextWithTag: Uint8Array,
  aad?: Uint8Array,
): Promise<Uint8Array> {
  checkArgs(key, nonce, ciphertextWithTag, aad);
  if (ciphertextWithTag.length < TAG_LENGTH) {
    throw new AuthenticationError();
  }
  const api = subtle();
  if (aeadBackend() === 'webcrypto' && api !== undefined) {
    const params = gcmParams(nonce, aad);
    const data = copy(ciphertextWithTag);
    const cryptoKey = await importKey(api, key);
    try {
      return new Uint8Array(await api.decrypt(params, cryptoKey, data));
    } catch {
      throw new AuthenticationError();
    }
  }
  try {
    return gcm(key, nonce, aad).decrypt(ciphertextWithTag);
  } catch {
    throw new AuthenticationError();
  }
}
