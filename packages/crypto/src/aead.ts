/**
 * AES-256-GCM authenticated encryption (NIST SP 800-38D) with a 96-bit nonce and a 128-bit tag
 * appended to the ciphertext, as in RFC 5116 §5.2 (AEAD_AES_256_GCM).
 *
 * Three interchangeable backends compute the same function: node:crypto (synchronous OpenSSL,
 * present when the `node` export condition loaded it, see src/node/), the platform's WebCrypto
 * (`crypto.subtle`, hardware-accelerated; browsers) and @noble/ciphers `gcm` (pure JS, for
 * contexts without `crypto.subtle`, e.g. a page served over plain HTTP). Imported keys are cached
 * per key array; a cached entry is reused only while the array still holds the same bytes
 * (_key-cache.ts).
 */
import { gcm } from '@noble/ciphers/aes.js';
import { assertBytes, assertBytesLength } from './_assert.ts';
import { AuthenticationError } from './_errors.ts';
import { KeyCache } from './_key-cache.ts';
import { checkBackend, native } from './_native.ts';
import type { Backend } from './_native.ts';

export { AuthenticationError } from './_errors.ts';

/** Which AES-GCM implementation runs: node:crypto, the platform's WebCrypto or @noble/ciphers. */
export type AeadBackend = Backend;

const KEY_LENGTH = 32;
const NONCE_LENGTH = 12;
const TAG_LENGTH = 16;

let selected: AeadBackend | 'auto' = 'auto';

const keyCache = new KeyCache<Promise<CryptoKey>>();

function subtle(): SubtleCrypto | undefined {
  const crypto = globalThis.crypto as Crypto | undefined;
  return crypto?.subtle ?? undefined;
}

/**
 * Reports which backend `aesGcmEncrypt`/`aesGcmDecrypt` use now: the one forced by
 * {@link setAeadBackend}, or under `'auto'` node:crypto when loaded (a `node` entry), else
 * WebCrypto when `crypto.subtle` exists, else noble.
 *
 * @returns `'node'`, `'webcrypto'` or `'noble'`.
 */
export function aeadBackend(): AeadBackend {
  if (selected !== 'auto') {
    return selected;
  }
  if (native.aead !== undefined) {
    return 'node';
  }
  return subtle() === undefined ? 'noble' : 'webcrypto';
}

/**
 * Forces a backend, or returns to automatic choice with `'auto'`. Meant for tests and benchmarks;
 * all backends compute identical outputs.
 *
 * @param backend - `'node'`, `'webcrypto'`, `'noble'` or `'auto'`.
 * @throws {RangeError} if `backend` is not one of those values.
 * @throws {TypeError} if `'node'` is asked for but node:crypto is not loaded (not a `node` entry),
 *   or `'webcrypto'` but `crypto.subtle` does not exist.
 */
export function setAeadBackend(backend: AeadBackend | 'auto'): void {
  checkBackend(backend, native.aead);
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
  return keyCache.get(key, (raw) =>
    api.importKey('raw', raw, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']),
  );
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
  const backend = aeadBackend();
  if (backend === 'node' && native.aead !== undefined) {
    return native.aead.encrypt(key, nonce, plaintext, aad);
  }
  const api = subtle();
  if (backend === 'webcrypto' && api !== undefined) {
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
  const backend = aeadBackend();
  if (backend === 'node' && native.aead !== undefined) {
    return native.aead.decrypt(key, nonce, ciphertextWithTag, aad);
  }
  const api = subtle();
  if (backend === 'webcrypto' && api !== undefined) {
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
