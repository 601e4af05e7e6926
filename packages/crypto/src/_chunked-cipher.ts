/**
 * The per-chunk AEAD of c2sp.org/chunked-encryption ("AEAD usage") for chunked.ts: `ChunkSealer`
 * and `ChunkOpener` seal and open one chunk at its index (AES-256-GCM through aead.ts, empty AAD,
 * the base nonce XOR the index), after the commitment check; `ChunkedEncryptor` and
 * `ChunkedDecryptor` are the public random-access faces, with the checks a caller's mistakes need.
 */
import { assertBytes, assertBytesLength } from './_assert.ts';
import {
  BLOCK_SIZE,
  CHUNK_SIZE,
  COMMITMENT_SIZE,
  ChunkedDecryptError,
  HEADER_SIZE,
  KEY_SIZE,
  SALT_SIZE,
  TAG_SIZE,
  checkBoolean,
  checkContext,
  checkIndex,
  checkSalt,
  chunkNonce,
  deriveChunkedKeys,
} from './_chunked-format.ts';
import { AuthenticationError } from './_errors.ts';
import { aesGcmDecrypt, aesGcmEncrypt } from './aead.ts';
import { constantTimeEqual } from './compare.ts';
import { randomBytes } from './random.ts';

/** Seals chunks of one message; the caller frames them (no checks of sizes against `final`). */
export class ChunkSealer {
  readonly header: Uint8Array;
  readonly #key: Uint8Array;
  readonly #baseNonce: Uint8Array;

  private constructor(key: Uint8Array, baseNonce: Uint8Array, header: Uint8Array) {
    this.#key = key;
    this.#baseNonce = baseNonce;
    this.header = header;
  }

  /** Derives the message's keys. The caller has checked key, context and salt. */
  static create(inputKey: Uint8Array, context: Uint8Array, salt: Uint8Array): ChunkSealer {
    const keys = deriveChunkedKeys(inputKey, salt, context);
    const header = new Uint8Array(HEADER_SIZE);
    header.set(salt);
    header.set(keys.commitment, SALT_SIZE);
    return new ChunkSealer(keys.key, keys.baseNonce, header);
  }

  /** `ciphertext || tag` of chunk `index`. @throws {RangeError} if `index` reaches 2^38. */
  seal(index: number, plain: Uint8Array): Promise<Uint8Array> {
    checkIndex(index);
    return aesGcmEncrypt(this.#key, chunkNonce(this.#baseNonce, index), plain);
  }
}

/** Opens chunks of one message whose commitment matched; the caller frames them. */
export class ChunkOpener {
  readonly #key: Uint8Array;
  readonly #baseNonce: Uint8Array;

  private constructor(key: Uint8Array, baseNonce: Uint8Array) {
    this.#key = key;
    this.#baseNonce = baseNonce;
  }

  /**
   * Derives the keys from the header's salt and checks its commitment (in constant time). The
   * caller has checked the types and the context.
   *
   * @throws {ChunkedDecryptError} `'key-size'` or `'header'`.
   */
  static open(inputKey: Uint8Array, context: Uint8Array, header: Uint8Array): ChunkOpener {
    if (inputKey.length !== KEY_SIZE) throw new ChunkedDecryptError('key-size');
    if (header.length !== HEADER_SIZE) throw new ChunkedDecryptError('header');
    const keys = deriveChunkedKeys(inputKey, header.subarray(0, SALT_SIZE), context);
    const expected = header.subarray(SALT_SIZE, SALT_SIZE + COMMITMENT_SIZE);
    if (!constantTimeEqual(keys.commitment, expected)) throw new ChunkedDecryptError('header');
    return new ChunkOpener(keys.key, keys.baseNonce);
  }

  /** The plaintext of chunk `index`. @throws {ChunkedDecryptError} `'chunk'` if it does not authenticate. */
  async open(index: number, sealed: Uint8Array): Promise<Uint8Array> {
    checkIndex(index);
    try {
      return await aesGcmDecrypt(this.#key, chunkNonce(this.#baseNonce, index), sealed);
    } catch (err) {
      if (err instanceof AuthenticationError) throw new ChunkedDecryptError('chunk');
      throw err;
    }
  }
}

/**
 * Random-access encryption of one message (c2sp.org/chunked-encryption, AES-256-GCM, SHA-512):
 * any chunk can be sealed, or sealed again, at any time, so an upload can resume from a chunk
 * boundary without re-reading the file from its start. The ciphertext is `header` followed by the
 * sealed chunks in index order; chunk `k` starts at `HEADER_SIZE + k * (CHUNK_SIZE + TAG_SIZE)`.
 *
 * Sealing a chunk again must give it the very same bytes: a chunk sealed twice with different
 * bytes would reuse its nonce, which breaks AES-GCM (its authentication key leaks). This object
 * remembers the tag of each chunk it sealed (16 bytes per chunk) and refuses such a reseal with a
 * `RangeError`; it cannot know about chunks sealed by another instance, so a caller that may
 * have lost track of what it sealed, or whose file may have changed, starts over with a new salt.
 */
export class ChunkedEncryptor {
  readonly #sealer: ChunkSealer;
  readonly #tags = new Map<number, Uint8Array>();
  #finalIndex: number | undefined;
  /** The highest index sealed as a full chunk: the final chunk comes after it. */
  #highestFull = -1;

  private constructor(sealer: ChunkSealer) {
    this.#sealer = sealer;
  }

  /**
   * Derives the message's key, base nonce and commitment.
   *
   * @param inputKey - 32 uniformly random bytes (e.g. a file's own key); never reuse a salt with it.
   * @param context - Application data bound to the ciphertext (at most 4096 bytes; may be empty).
   * @param salt - 24 bytes; by default fresh random ones. Give one only to resume or reproduce a
   *   message whose salt is in its header.
   * @throws {TypeError} if an argument is not a Uint8Array.
   * @throws {RangeError} if `inputKey` is not 32 bytes, `salt` not 24, or `context` too long.
   */
  static async create(
    inputKey: Uint8Array,
    context: Uint8Array,
    salt?: Uint8Array,
  ): Promise<ChunkedEncryptor> {
    assertBytesLength(inputKey, KEY_SIZE, 'inputKey');
    checkContext(context);
    if (salt !== undefined) checkSalt(salt);
    const ownSalt = salt === undefined ? randomBytes(SALT_SIZE) : salt.slice();
    return new ChunkedEncryptor(ChunkSealer.create(inputKey, context, ownSalt));
  }

  /** `salt || commitment` (56 bytes), the start of the ciphertext; a fresh copy on each read. */
  get header(): Uint8Array {
    return this.#sealer.header.slice();
  }

  /**
   * Seals chunk `index`.
   *
   * @param index - The chunk number, `0 .. 2^38 - 1`.
   * @param plain - Exactly `CHUNK_SIZE` bytes, or fewer (possibly none) when `final`.
   * @param final - Whether this is the message's last chunk (always shorter than `CHUNK_SIZE`: a
   *   message whose length is a multiple of it ends with an empty final chunk).
   * @returns `ciphertext || tag`, `plain.length + TAG_SIZE` bytes.
   * @throws {TypeError} if an argument has the wrong type.
   * @throws {RangeError} if `index` is out of range, `plain` has the wrong length for `final`, a
   *   second final chunk or a chunk after the final one is sealed, or the chunk was sealed before
   *   with other bytes.
   */
  async sealChunk(index: number, plain: Uint8Array, final: boolean): Promise<Uint8Array> {
    checkIndex(index);
    assertBytes(plain, 'plain');
    checkBoolean(final, 'final');
    if (final ? plain.length >= CHUNK_SIZE : plain.length !== CHUNK_SIZE) {
      throw new RangeError(
        final
          ? `a final chunk must be shorter than ${CHUNK_SIZE} bytes`
          : `a chunk that is not final must be ${CHUNK_SIZE} bytes`,
      );
    }
    const last = this.#finalIndex;
    if (last !== undefined && (index > last || (final && index !== last))) {
      throw new RangeError(`chunk ${last} was sealed as the final chunk`);
    }
    if (final && index <= this.#highestFull) {
      throw new RangeError(`chunk ${this.#highestFull} was sealed as a full chunk`);
    }
    const sealed = await this.#sealer.seal(index, plain);
    const tag = sealed.subarray(sealed.length - TAG_SIZE);
    const before = this.#tags.get(index);
    if (before !== undefined && !constantTimeEqual(before, tag)) {
      sealed.fill(0);
      throw new RangeError(`chunk ${index} was sealed before with other bytes (nonce reuse)`);
    }
    this.#tags.set(index, tag.slice());
    if (final) this.#finalIndex = index;
    else this.#highestFull = Math.max(this.#highestFull, index);
    return sealed;
  }
}

/**
 * Random-access decryption of one message: the header's commitment is checked once, then any
 * chunk opens at its index. A chunk's plaintext is returned only once it authenticated.
 */
export class ChunkedDecryptor {
  readonly #opener: ChunkOpener;
  #finalIndex: number | undefined;

  private constructor(opener: ChunkOpener) {
    this.#opener = opener;
  }

  /**
   * Checks the key size and the commitment of `header` (the first `HEADER_SIZE` bytes of the
   * ciphertext) against `inputKey` and `context`.
   *
   * @throws {TypeError} if an argument is not a Uint8Array.
   * @throws {RangeError} if `context` is longer than 4096 bytes.
   * @throws {ChunkedDecryptError} `'key-size'` if `inputKey` is not 32 bytes; `'header'` if
   *   `header` is not 56 bytes or its commitment does not match (wrong key, context or salt).
   */
  static async open(
    inputKey: Uint8Array,
    context: Uint8Array,
    header: Uint8Array,
  ): Promise<ChunkedDecryptor> {
    assertBytes(inputKey, 'inputKey');
    checkContext(context);
    assertBytes(header, 'header');
    return new ChunkedDecryptor(ChunkOpener.open(inputKey, context, header));
  }

  /**
   * Opens chunk `index`. A chunk shorter than a full one that authenticates is the message's
   * final chunk (only the final chunk is sealed short), whatever `final` says; once one has, a
   * chunk after it fails as `'trailing'`.
   *
   * @param index - The chunk number, `0 .. 2^38 - 1`.
   * @param ct - The encrypted chunk, tag included: at most `CHUNK_SIZE + TAG_SIZE` bytes.
   * @param final - The caller knows this is the last chunk (e.g. from the authenticated length):
   *   then it must be short, or the message was truncated.
   * @returns The chunk's plaintext.
   * @throws {TypeError} if an argument has the wrong type.
   * @throws {RangeError} if `index` is out of range or `ct` is longer than a full chunk.
   * @throws {ChunkedDecryptError} `'truncated'` if `ct` is shorter than a tag, or full while
   *   `final`; `'trailing'` if `index` is after an authenticated final chunk; `'chunk'` if it
   *   does not authenticate.
   */
  async openChunk(index: number, ct: Uint8Array, final: boolean): Promise<Uint8Array> {
    checkIndex(index);
    assertBytes(ct, 'ct');
    checkBoolean(final, 'final');
    if (ct.length > BLOCK_SIZE) {
      throw new RangeError(`an encrypted chunk is at most ${BLOCK_SIZE} bytes`);
    }
    if (ct.length < TAG_SIZE || (final && ct.length === BLOCK_SIZE)) {
      throw new ChunkedDecryptError('truncated');
    }
    if (this.#finalIndex !== undefined && index > this.#finalIndex) {
      throw new ChunkedDecryptError('trailing');
    }
    const plain = await this.#opener.open(index, ct);
    if (ct.length < BLOCK_SIZE) this.#finalIndex = index;
    return plain;
  }
}
