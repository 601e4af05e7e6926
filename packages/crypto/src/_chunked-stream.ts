/**
 * Whole-message c2sp.org/chunked-encryption for chunked.ts ("Implementation notes"): WHATWG
 * TransformStreams that re-chunk input of any piece sizes (encryption buffers up to one chunk,
 * decryption up to one encrypted chunk plus the look-ahead that tells a full chunk from the final
 * one), and the one-shot conveniences over byte arrays.
 */
import { assertBytes, assertBytesLength } from './_assert.ts';
import { ChunkOpener, ChunkSealer } from './_chunked-cipher.ts';
import {
  BLOCK_SIZE,
  CHUNK_SIZE,
  ChunkedDecryptError,
  HEADER_SIZE,
  KEY_SIZE,
  MAX_CHUNKS,
  MAX_PLAINTEXT_LENGTH,
  SALT_SIZE,
  TAG_SIZE,
  checkContext,
  checkSalt,
  chunkedCiphertextLength,
  chunkedPlaintextLength,
} from './_chunked-format.ts';
import { randomBytes } from './random.ts';

function sealerFor(inputKey: unknown, context: unknown, salt: unknown): ChunkSealer {
  assertBytesLength(inputKey, KEY_SIZE, 'inputKey');
  checkContext(context);
  if (salt !== undefined) checkSalt(salt);
  const ownSalt = salt === undefined ? randomBytes(SALT_SIZE) : (salt as Uint8Array).slice();
  return ChunkSealer.create(inputKey, context, ownSalt);
}

/**
 * A stream that encrypts one message: it writes the header first, then one sealed chunk for every
 * `CHUNK_SIZE` bytes written (in pieces of any size), and on close the short final chunk (empty
 * when the length is a multiple of `CHUNK_SIZE`). It holds at most one chunk of plaintext.
 *
 * @param inputKey - 32 uniformly random bytes.
 * @param context - Application data bound to the ciphertext (at most 4096 bytes; may be empty).
 * @param salt - 24 bytes; by default fresh random ones.
 * @throws {TypeError} if an argument is not a Uint8Array (a written piece that is not one errors
 *   the stream with a TypeError).
 * @throws {RangeError} if `inputKey` is not 32 bytes, `salt` not 24, or `context` too long; the
 *   stream errors with a RangeError if the message would pass 2^38 chunks.
 */
export function encryptStream(
  inputKey: Uint8Array,
  context: Uint8Array,
  salt?: Uint8Array,
): TransformStream<Uint8Array, Uint8Array> {
  const sealer = sealerFor(inputKey, context, salt);
  const block = new Uint8Array(CHUNK_SIZE);
  let filled = 0;
  let index = 0;
  const seal = async (plain: Uint8Array): Promise<Uint8Array> => sealer.seal(index++, plain);
  return new TransformStream<Uint8Array, Uint8Array>({
    start(controller) {
      controller.enqueue(sealer.header.slice());
    },
    async transform(piece, controller) {
      assertBytes(piece, 'chunk');
      let offset = 0;
      while (offset < piece.length) {
        if (filled === 0 && piece.length - offset >= CHUNK_SIZE) {
          // A whole chunk inside the piece: seal it in place (every backend reads it at once).
          controller.enqueue(await seal(piece.subarray(offset, offset + CHUNK_SIZE)));
          offset += CHUNK_SIZE;
          continue;
        }
        const n = Math.min(CHUNK_SIZE - filled, piece.length - offset);
        block.set(piece.subarray(offset, offset + n), filled);
        filled += n;
        offset += n;
        if (filled === CHUNK_SIZE) {
          controller.enqueue(await seal(block));
          filled = 0;
        }
      }
    },
    async flush(controller) {
      controller.enqueue(await seal(block.subarray(0, filled)));
      block.fill(0);
    },
  });
}

/**
 * A stream that decrypts one message: it checks the header's commitment once 56 bytes arrived,
 * then releases each chunk's plaintext only after the chunk authenticated. A full chunk is opened
 * once a byte after it arrives; on close, what is left must be a short final chunk. Any failure
 * errors the stream for good (reads and writes keep rejecting), so a truncated or extended
 * message never looks complete; the plaintext released before the failure is a prefix of the
 * message, in whole chunks. It holds at most one encrypted chunk.
 *
 * @param inputKey - The message's 32-byte input key.
 * @param context - The context it was encrypted with.
 * @throws {TypeError} if an argument is not a Uint8Array (a written piece that is not one errors
 *   the stream with a TypeError).
 * @throws {RangeError} if `context` is longer than 4096 bytes.
 * The stream errors with a `ChunkedDecryptError`: `'key-size'` (at once), `'header'` (a short
 * header, or a commitment that does not match the key, context and salt), `'chunk'`,
 * `'truncated'`, or `'trailing'` (past 2^38 chunks).
 */
export function decryptStream(
  inputKey: Uint8Array,
  context: Uint8Array,
): TransformStream<Uint8Array, Uint8Array> {
  assertBytes(inputKey, 'inputKey');
  checkContext(context);
  const key = inputKey.slice();
  const ctx = context.slice();
  const header = new Uint8Array(HEADER_SIZE);
  let headerFilled = 0;
  let opener: ChunkOpener | undefined;
  const block = new Uint8Array(BLOCK_SIZE);
  let filled = 0;
  let index = 0;
  /** Opens a full chunk that more bytes follow, so it is not the final one. */
  const openFull = async (sealed: Uint8Array): Promise<Uint8Array> => {
    if (index >= MAX_CHUNKS - 1) throw new ChunkedDecryptError('trailing');
    return opener!.open(index++, sealed);
  };
  return new TransformStream<Uint8Array, Uint8Array>({
    start(controller) {
      // Errors the stream rather than its constructor: decryption failures arrive one way.
      if (key.length !== KEY_SIZE) controller.error(new ChunkedDecryptError('key-size'));
    },
    async transform(piece, controller) {
      assertBytes(piece, 'chunk');
      let offset = 0;
      if (opener === undefined) {
        offset = Math.min(HEADER_SIZE - headerFilled, piece.length);
        header.set(piece.subarray(0, offset), headerFilled);
        headerFilled += offset;
        if (headerFilled < HEADER_SIZE) return;
        opener = ChunkOpener.open(key, ctx, header);
      }
      while (offset < piece.length) {
        if (filled === BLOCK_SIZE) {
          controller.enqueue(await openFull(block));
          filled = 0;
        }
        if (filled === 0 && piece.length - offset > BLOCK_SIZE) {
          controller.enqueue(await openFull(piece.subarray(offset, offset + BLOCK_SIZE)));
          offset += BLOCK_SIZE;
          continue;
        }
        const n = Math.min(BLOCK_SIZE - filled, piece.length - offset);
        block.set(piece.subarray(offset, offset + n), filled);
        filled += n;
        offset += n;
      }
    },
    async flush(controller) {
      if (opener === undefined) throw new ChunkedDecryptError('header');
      if (filled < TAG_SIZE || filled === BLOCK_SIZE) throw new ChunkedDecryptError('truncated');
      controller.enqueue(await opener.open(index, block.subarray(0, filled)));
    },
  });
}

/**
 * Encrypts a whole message held in memory: `header || chunk 0 || ... || final chunk`.
 *
 * @param inputKey - 32 uniformly random bytes.
 * @param context - Application data bound to the ciphertext (at most 4096 bytes; may be empty).
 * @param plaintext - The message.
 * @param salt - 24 bytes; by default fresh random ones.
 * @returns The ciphertext, `chunkedCiphertextLength(plaintext.length)` bytes.
 * @throws {TypeError} if an argument is not a Uint8Array.
 * @throws {RangeError} if `inputKey` is not 32 bytes, `salt` not 24, or `context` too long.
 */
export async function encryptChunked(
  inputKey: Uint8Array,
  context: Uint8Array,
  plaintext: Uint8Array,
  salt?: Uint8Array,
): Promise<Uint8Array> {
  assertBytes(plaintext, 'plaintext');
  if (plaintext.length > MAX_PLAINTEXT_LENGTH) throw new RangeError('plaintext is too long');
  const sealer = sealerFor(inputKey, context, salt);
  const out = new Uint8Array(chunkedCiphertextLength(plaintext.length));
  out.set(sealer.header);
  const last = Math.floor(plaintext.length / CHUNK_SIZE);
  for (let i = 0; i <= last; i++) {
    const plain = plaintext.subarray(
      i * CHUNK_SIZE,
      Math.min((i + 1) * CHUNK_SIZE, plaintext.length),
    );
    out.set(await sealer.seal(i, plain), HEADER_SIZE + i * BLOCK_SIZE);
  }
  return out;
}

/**
 * Decrypts a whole message held in memory. Nothing is returned unless every chunk authenticated
 * and the length is the one the final chunk vouches for.
 *
 * @param inputKey - The message's 32-byte input key.
 * @param context - The context it was encrypted with.
 * @param ciphertext - `header || chunks`.
 * @returns The message.
 * @throws {TypeError} if an argument is not a Uint8Array.
 * @throws {RangeError} if `context` is longer than 4096 bytes.
 * @throws {ChunkedDecryptError} `'key-size'`, `'header'` (shorter than a header, or a commitment
 *   that does not match), `'truncated'` (a length no message has) or `'chunk'`.
 */
export async function decryptChunked(
  inputKey: Uint8Array,
  context: Uint8Array,
  ciphertext: Uint8Array,
): Promise<Uint8Array> {
  assertBytes(inputKey, 'inputKey');
  checkContext(context);
  assertBytes(ciphertext, 'ciphertext');
  if (inputKey.length !== KEY_SIZE) throw new ChunkedDecryptError('key-size');
  if (ciphertext.length < HEADER_SIZE) throw new ChunkedDecryptError('header');
  const opener = ChunkOpener.open(inputKey, context, ciphertext.subarray(0, HEADER_SIZE));
  const out = new Uint8Array(chunkedPlaintextLength(ciphertext.length));
  const last = Math.floor(out.length / CHUNK_SIZE);
  try {
    for (let i = 0; i <= last; i++) {
      const start = HEADER_SIZE + i * BLOCK_SIZE;
      const sealed = ciphertext.subarray(start, Math.min(start + BLOCK_SIZE, ciphertext.length));
      out.set(await opener.open(i, sealed), i * CHUNK_SIZE);
    }
  } catch (err) {
    out.fill(0);
    throw err;
  }
  return out;
}
