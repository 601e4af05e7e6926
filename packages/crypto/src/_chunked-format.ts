/**
 * The format of c2sp.org/chunked-encryption ("Cobblestone-256": HKDF-Expand SHA-512 and
 * AES-256-GCM) for chunked.ts: sizes, the length and range arithmetic of the implementation
 * notes, the key/nonce/commitment derivation of "Key derivation", the per-chunk nonce of "AEAD
 * usage", and the one error decryption raises.
 */
import { hmac } from '@noble/hashes/hmac.js';
import { sha512 } from '@noble/hashes/sha2.js';
import { assertBytes, assertBytesLength, assertInteger } from './_assert.ts';

/** Plaintext bytes per chunk; the final chunk holds fewer (possibly none). */
export const CHUNK_SIZE = 16384;
/** AES-GCM tag bytes at the end of each encrypted chunk. */
export const TAG_SIZE = 16;
/** Salt bytes at the start of a ciphertext. */
export const SALT_SIZE = 24;
/** Commitment bytes after the salt. */
export const COMMITMENT_SIZE = 32;
/** `salt || commitment`, before the first chunk. */
export const HEADER_SIZE = SALT_SIZE + COMMITMENT_SIZE;
/** The input key (and AES key) size in bytes. */
export const KEY_SIZE = 32;
/** The AEAD's name in the IANA registry, bound into the derivation. */
export const AEAD_NAME = 'AEAD_AES_256_GCM';
/** Longest context accepted (bytes): far above any protocol's need, a bound on the HKDF input. */
export const MAX_CONTEXT_SIZE = 4096;
/** A message has at most 2^38 chunks; a chunk counter that reaches this aborts ("Message chunking"). */
export const MAX_CHUNKS = 2 ** 38;
/** The largest plaintext: 2^38 - 1 full chunks and a final one of CHUNK_SIZE - 1 bytes (2^52 - 1). */
export const MAX_PLAINTEXT_LENGTH = MAX_CHUNKS * CHUNK_SIZE - 1;

const NONCE_SIZE = 12;
/** One full encrypted chunk: CHUNK_SIZE + TAG_SIZE. */
export const BLOCK_SIZE = CHUNK_SIZE + TAG_SIZE;
const INFO_PREFIX = new TextEncoder().encode(`c2sp.org/chunked-encryption@v1+${AEAD_NAME}\u0000`);

/** Why a decryption failed, and nothing more. */
export type ChunkedDecryptReason = 'key-size' | 'header' | 'chunk' | 'truncated' | 'trailing';

/**
 * A chunked ciphertext failed to decrypt. `reason` says only the kind: `'key-size'` (the input
 * key is not 32 bytes), `'header'` (a short header, or a commitment that does not match: wrong
 * key, context or salt), `'chunk'` (a chunk did not authenticate: tampered, reordered, cut inside
 * its last chunk, or followed by extra bytes that leave a plausible length), `'truncated'` (a
 * length no message has: a missing final chunk, a final chunk shorter than a tag, a final chunk
 * that is full), `'trailing'` (data after a final chunk, or past the 2^38-chunk limit). Callers
 * map it to the protocol's `DECRYPT_FAILED`.
 */
export class ChunkedDecryptError extends Error {
  readonly reason: ChunkedDecryptReason;

  constructor(reason: ChunkedDecryptReason) {
    super(`chunked decryption failed: ${reason}`);
    this.name = 'ChunkedDecryptError';
    this.reason = reason;
  }
}

/** What HKDF-Expand gives for one message: the AES key, base nonce and commitment. */
export interface ChunkedKeys {
  readonly key: Uint8Array;
  readonly baseNonce: Uint8Array;
  readonly commitment: Uint8Array;
}

/** @throws {TypeError} if `context` is not a Uint8Array. @throws {RangeError} if it is too long. */
export function checkContext(context: unknown): asserts context is Uint8Array {
  assertBytes(context, 'context');
  if (context.length > MAX_CONTEXT_SIZE) {
    throw new RangeError(`context must be at most ${MAX_CONTEXT_SIZE} bytes`);
  }
}

/** @throws {TypeError} if `value` is not a boolean. */
export function checkBoolean(value: unknown, name: string): asserts value is boolean {
  if (typeof value !== 'boolean') throw new TypeError(`${name} must be a boolean`);
}

/**
 * HKDF-Expand (RFC 5869 §2.3) with SHA-512: `T(n) = HMAC(prk, T(n-1) || info || n)`, the first
 * `length` bytes of `T(1) || T(2) || ...` (at most 255 blocks). Composed here from @noble/hashes'
 * HMAC because its `expand` refuses a PRK shorter than the hash (RFC 5869 asks "at least HashLen"
 * of an extract output), while this scheme expands straight from a 32-byte uniformly random key,
 * as NIST SP 800-108's feedback mode allows. Tests check it equals noble's `expand` wherever that
 * accepts the key.
 */
export function hkdfExpandSha512(prk: Uint8Array, info: Uint8Array, length: number): Uint8Array {
  const hashLength = sha512.outputLen;
  assertInteger(length, 0, 255 * hashLength, 'length');
  const okm = new Uint8Array(Math.ceil(length / hashLength) * hashLength);
  let previous = new Uint8Array(0);
  for (let n = 1; (n - 1) * hashLength < length; n++) {
    const next = hmac.create(sha512, prk).update(previous).update(info).update(Uint8Array.of(n));
    previous.fill(0);
    previous = next.digest();
    okm.set(previous, (n - 1) * hashLength);
  }
  previous.fill(0);
  const out = okm.slice(0, length);
  okm.fill(0);
  return out;
}

/**
 * `key || base nonce || commitment = HKDF-Expand(prk = input key, info = "c2sp.org/chunked-
 * encryption@v1+" || aead || 0x00 || salt || context)` with SHA-512 ("Key derivation"). The
 * caller has checked the key (32 bytes), salt (24) and context.
 */
export function deriveChunkedKeys(
  inputKey: Uint8Array,
  salt: Uint8Array,
  context: Uint8Array,
): ChunkedKeys {
  const info = new Uint8Array(INFO_PREFIX.length + SALT_SIZE + context.length);
  info.set(INFO_PREFIX);
  info.set(salt, INFO_PREFIX.length);
  info.set(context, INFO_PREFIX.length + SALT_SIZE);
  const okm = hkdfExpandSha512(inputKey, info, KEY_SIZE + NONCE_SIZE + COMMITMENT_SIZE);
  return {
    key: okm.slice(0, KEY_SIZE),
    baseNonce: okm.slice(KEY_SIZE, KEY_SIZE + NONCE_SIZE),
    commitment: okm.slice(KEY_SIZE + NONCE_SIZE),
  };
}

/** @throws {TypeError}/{RangeError} unless `index` is an integer chunk number below 2^38. */
export function checkIndex(index: unknown): asserts index is number {
  assertInteger(index, 0, MAX_CHUNKS - 1, 'index');
}

/**
 * The nonce of chunk `index`: the base nonce XOR the index as a 96-bit big-endian integer. The
 * index is below 2^38, so only the last 5 bytes change: byte 7 takes bits 32-37, bytes 8-11 the
 * low 32 bits.
 */
export function chunkNonce(baseNonce: Uint8Array, index: number): Uint8Array {
  const nonce = baseNonce.slice();
  const high = Math.floor(index / 2 ** 32);
  const low = index >>> 0;
  nonce[7]! ^= high;
  nonce[8]! ^= low >>> 24;
  nonce[9]! ^= (low >>> 16) & 0xff;
  nonce[10]! ^= (low >>> 8) & 0xff;
  nonce[11]! ^= low & 0xff;
  return nonce;
}

/**
 * Ciphertext length of a plaintext of `plainLength` bytes: the header, every chunk's bytes and one
 * tag per chunk (there are `floor(n / CHUNK_SIZE) + 1` chunks, the last one short).
 *
 * @throws {TypeError} if `plainLength` is not a number.
 * @throws {RangeError} if it is not an integer in `[0, 2^52 - 1]` (at most 2^38 chunks).
 */
export function chunkedCiphertextLength(plainLength: number): number {
  assertInteger(plainLength, 0, MAX_PLAINTEXT_LENGTH, 'plainLength');
  return HEADER_SIZE + plainLength + (Math.floor(plainLength / CHUNK_SIZE) + 1) * TAG_SIZE;
}

/**
 * Plaintext length of a ciphertext of `ctLength` bytes ("Implementation notes": after the header,
 * whole blocks of CHUNK_SIZE + TAG_SIZE, then a final chunk of TAG_SIZE to BLOCK - 1 bytes).
 *
 * @throws {TypeError} if `ctLength` is not a number.
 * @throws {RangeError} if it is not a non-negative safe integer.
 * @throws {ChunkedDecryptError} `'truncated'` for a length no message has.
 */
export function chunkedPlaintextLength(ctLength: number): number {
  assertInteger(ctLength, 0, Number.MAX_SAFE_INTEGER, 'ctLength');
  const body = ctLength - HEADER_SIZE;
  if (body < TAG_SIZE) throw new ChunkedDecryptError('truncated');
  const full = Math.floor(body / BLOCK_SIZE);
  const rest = body - full * BLOCK_SIZE;
  if (rest < TAG_SIZE || full >= MAX_CHUNKS) throw new ChunkedDecryptError('truncated');
  return full * CHUNK_SIZE + rest - TAG_SIZE;
}

/** Index of the final (short) chunk of a plaintext of `plainLength` bytes. */
export function finalChunkIndex(plainLength: number): number {
  assertInteger(plainLength, 0, MAX_PLAINTEXT_LENGTH, 'plainLength');
  return Math.floor(plainLength / CHUNK_SIZE);
}

/**
 * Which ciphertext bytes hold plaintext `[plainStart, plainEnd)` of a message of `plainLength`
 * bytes: chunks `firstChunk..lastChunk`, at ciphertext bytes `[ctStart, ctEnd)` (whole chunks,
 * tags included; open each with `ChunkedDecryptor.openChunk`, `final` for the message's final
 * chunk). An empty range still names the one chunk that holds its position. Chunk `k` starts at
 * `HEADER_SIZE + k * (CHUNK_SIZE + TAG_SIZE)`; plaintext byte `i` is byte `i % CHUNK_SIZE` of
 * chunk `floor(i / CHUNK_SIZE)`. `plainLength` must be trusted (e.g. the sealed size of a file):
 * to authenticate it, open its final chunk (`finalChunkIndex`) with `final` set.
 *
 * @throws {TypeError} if an argument is not a number.
 * @throws {RangeError} unless `0 <= plainStart <= plainEnd <= plainLength <= 2^52 - 1`.
 */
export function chunkSpan(
  plainStart: number,
  plainEnd: number,
  plainLength: number,
): { firstChunk: number; lastChunk: number; ctStart: number; ctEnd: number } {
  assertInteger(plainLength, 0, MAX_PLAINTEXT_LENGTH, 'plainLength');
  assertInteger(plainEnd, 0, plainLength, 'plainEnd');
  assertInteger(plainStart, 0, plainEnd, 'plainStart');
  const firstChunk = Math.floor(plainStart / CHUNK_SIZE);
  const lastChunk = plainEnd > plainStart ? Math.floor((plainEnd - 1) / CHUNK_SIZE) : firstChunk;
  const ctStart = HEADER_SIZE + firstChunk * BLOCK_SIZE;
  const ctEnd = Math.min(
    HEADER_SIZE + (lastChunk + 1) * BLOCK_SIZE,
    chunkedCiphertextLength(plainLength),
  );
  return { firstChunk, lastChunk, ctStart, ctEnd };
}

/** @throws {TypeError}/{RangeError} unless `salt` is 24 bytes. */
export function checkSalt(salt: unknown): asserts salt is Uint8Array {
  assertBytesLength(salt, SALT_SIZE, 'salt');
}
