/**
 * Uploading one part of a file message (docs/protocol.md "Files"): the plaintext is read, hashed
 * and encrypted chunk by chunk (@latchkey/crypto/chunked) and sent to the relay in requests of at
 * most 7.5 MiB (requestChunks), the next one sealed while one is in flight, so a file never
 * sits whole in memory. A dropped request resumes: the relay says how far it got, and the chunk under that offset is sealed again (the same key and salt
 * give the same bytes), without reading the file from the start.
 */
import {
  CHUNK_SIZE,
  ChunkedEncryptor,
  HEADER_SIZE,
  TAG_SIZE,
  chunkedCiphertextLength,
} from '@latchkey/crypto/chunked';
import { createSha256 } from '@latchkey/crypto/hash';
import { FILE_LIMITS, LatchkeyError, backoffDelay } from '@latchkey/protocol';
import { hexOf } from './file-body.ts';
import { appendUpload, createUpload, uploadState, type FileHttp } from './file-http.ts';

/** Something readable at any offset: a browser Blob/File, or a Node file handle's wrapper. */
export interface FileSourceLike {
  readonly name: string;
  readonly type: string;
  readonly size: number;
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** A file to send: a Blob (a browser File carries its name) or any FileSourceLike. */
export type FileSource = Blob | FileSourceLike;

/** Reads a Blob by slices (a File's own name, else `file`). */
export function sourceOf(file: FileSource): FileSourceLike {
  if (typeof Blob !== 'undefined' && file instanceof Blob) {
    const name = (file as Blob & { name?: unknown }).name;
    return {
      name: typeof name === 'string' && name !== '' ? name : 'file',
      type: file.type,
      size: file.size,
      read: async (offset, length) =>
        new Uint8Array(await file.slice(offset, offset + length).arrayBuffer()),
    };
  }
  return file as FileSourceLike;
}

/**
 * Chunks per upload request: an eighth of the file (so progress moves in steps of at most 12.5%),
 * at least 64 (1 MiB) and at most 480 (7.5 MiB, under the relay's largest request): each request
 * costs the relay an fsync, so fewer and larger requests go faster.
 */
function requestChunks(chunks: number): number {
  const most = Math.floor(
    (FILE_LIMITS.maxUploadRequestBytes - 1024 * 1024) / (CHUNK_SIZE + TAG_SIZE),
  );
  return Math.max(64, Math.min(most, Math.ceil(chunks / 8)));
}
const CHUNK_CT = CHUNK_SIZE + TAG_SIZE;
/** Failed requests in a row before the upload gives up. */
const MAX_RETRIES = 6;
const RETRYABLE = new Set(['UNAVAILABLE', 'INTERNAL', 'TIMEOUT', 'RATE_LIMITED', 'CONFLICT']);

export interface UploadOptions {
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
  /** Delay before a retry (tests shorten it). */
  retryDelayMs?: (attempt: number) => number;
}

export interface Uploaded {
  blob: string;
  /** Lower-case hex SHA-256 of the plaintext. */
  sha256: string;
  size: number;
}

function cancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new LatchkeyError('TIMEOUT', 'upload cancelled');
}

/**
 * Encrypts `src` under `key` with `context` and uploads it.
 * @throws LatchkeyError TOO_LARGE / QUOTA_EXCEEDED / FORBIDDEN / CONTACT_CLOSED... from the
 *   relay, UNAVAILABLE after repeated failures, TIMEOUT when cancelled, BAD_REQUEST when the
 *   source changed size while it was read.
 */
export async function uploadPart(
  h: FileHttp,
  src: FileSourceLike,
  key: Uint8Array,
  context: Uint8Array,
  opts: UploadOptions = {},
): Promise<Uploaded> {
  const { signal } = opts;
  const size = src.size;
  const total = chunkedCiphertextLength(size);
  const lastChunk = Math.floor(size / CHUNK_SIZE);
  const perRequest = requestChunks(lastChunk + 1);
  const enc = await ChunkedEncryptor.create(key, context);
  const hash = createSha256();
  /** Chunks hashed so far, in order: a chunk sealed again after a resume is not hashed twice. */
  let hashed = 0;

  const sealChunk = async (k: number): Promise<Uint8Array> => {
    const start = k * CHUNK_SIZE;
    const length = Math.min(CHUNK_SIZE, size - start);
    const plain = await src.read(start, length);
    if (plain.length !== length) throw new LatchkeyError('BAD_REQUEST', 'file changed while read');
    if (k === hashed) {
      hash.update(plain);
      hashed++;
    }
    return enc.sealChunk(k, plain, k === lastChunk);
  };

  /** The ciphertext from `offset` for one request. */
  const bytesFrom = async (offset: number): Promise<Uint8Array> => {
    const pieces: Uint8Array[] = [];
    let length = 0;
    if (offset < HEADER_SIZE) {
      pieces.push(enc.header.subarray(offset));
      length += HEADER_SIZE - offset;
    }
    let k = offset < HEADER_SIZE ? 0 : Math.floor((offset - HEADER_SIZE) / CHUNK_CT);
    let skip = offset < HEADER_SIZE ? 0 : offset - HEADER_SIZE - k * CHUNK_CT;
    for (let n = 0; n < perRequest && k <= lastChunk; n++, k++) {
      const ct = await sealChunk(k);
      pieces.push(skip > 0 ? ct.subarray(skip) : ct);
      length += ct.length - skip;
      skip = 0;
    }
    const out = new Uint8Array(length);
    let at = 0;
    for (const p of pieces) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  };

  cancelled(signal);
  let state = await createUpload(h, total, signal);
  let failures = 0;
  opts.onProgress?.(0, size);
  // The next request's bytes are read and sealed while the current one is in flight.
  let ahead: { offset: number; bytes: Promise<Uint8Array> } | null = null;
  while (!state.complete) {
    cancelled(signal);
    try {
      const bytes: Uint8Array =
        ahead?.offset === state.offset ? await ahead.bytes : await bytesFrom(state.offset);
      const end: number = state.offset + bytes.length;
      ahead = end < total ? { offset: end, bytes: bytesFrom(end) } : null;
      ahead?.bytes.catch(() => undefined);
      state = await appendUpload(h, state.blob, state.offset, bytes, signal);
      failures = 0;
      opts.onProgress?.(Math.floor((state.offset / total) * size), size);
    } catch (err) {
      await ahead?.bytes.catch(() => undefined);
      ahead = null;
      cancelled(signal);
      if (!(err instanceof LatchkeyError) || !RETRYABLE.has(err.code) || ++failures > MAX_RETRIES)
        throw err;
      const delay =
        opts.retryDelayMs?.(failures) ??
        backoffDelay(failures, { baseMs: 250, maxMs: 8_000, jitter: 'equal' });
      await new Promise((r) => setTimeout(r, delay));
      state = await uploadState(h, state.blob, signal).catch(() => state);
    }
  }
  // Every chunk was read once at least, in order, so the hash covers the whole file.
  while (hashed <= lastChunk) await sealChunk(hashed);
  opts.onProgress?.(size, size);
  return { blob: state.blob, sha256: hexOf(hash.digest()), size };
}
