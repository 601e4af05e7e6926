/**
 * Reading one part of a file message (docs/protocol.md "Files"): a capability link from the
 * relay, the ciphertext streamed (a dropped read resumes with a Range request at the next chunk),
 * each chunk released only once it authenticated (@latchkey/crypto/chunked), and the whole
 * checked against the size and SHA-256 the sealed message states. Any failure (wrong length,
 * commitment, a chunk, truncation, the digest) errors the stream with DECRYPT_FAILED: the
 * reader must discard what it got (the CLI writes to a temporary file and renames on success).
 */
import {
  CHUNK_SIZE,
  ChunkedDecryptor,
  HEADER_SIZE,
  TAG_SIZE,
  chunkedCiphertextLength,
} from '@latchkey/crypto/chunked';
import { createSha256 } from '@latchkey/crypto/hash';
import { LatchkeyError } from '@latchkey/protocol';
import { hexOf } from './file-body.ts';
import { fileLink, type FileHttp } from './file-http.ts';
import type { FetchLike } from './key-service.ts';

export interface PartToRead {
  blob: string;
  key: Uint8Array;
  context: Uint8Array;
  /** Plaintext size and SHA-256 (hex) as the sealed message states them. */
  size: number;
  sha256: string;
}

export interface ReadOptions {
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

const CHUNK_CT = CHUNK_SIZE + TAG_SIZE;
/** Dropped reads in a row before the download gives up. */
const MAX_RESUMES = 4;

function decryptFailed(why: string): LatchkeyError {
  return new LatchkeyError('DECRYPT_FAILED', 'file could not be decrypted', { detail: why });
}

/** Reads the ciphertext from `from` to the end, resuming at most MAX_RESUMES times. */
async function* ciphertext(
  h: FileHttp,
  part: PartToRead,
  expected: number,
  next: () => number,
  signal: AbortSignal | undefined,
): AsyncGenerator<Uint8Array> {
  let link: { url: string; size: number; expiresAt: number } | null = null;
  let drops = 0;
  for (;;) {
    const from = next();
    if (from >= expected) return;
    if (!link || link.expiresAt - 5_000 < Date.now()) {
      link = await fileLink(h, part.blob, signal);
      if (link.size !== expected) throw decryptFailed('stored length differs from the message');
    }
    const res = await get(h.fetch, link.url, from, signal);
    if (res.status === 403 || res.status === 404 || res.status === 410) {
      throw new LatchkeyError(res.status === 403 ? 'FORBIDDEN' : 'NOT_FOUND', 'file not readable');
    }
    if (!(res.status === 206 || (res.status === 200 && from === 0)) || !res.body) {
      throw new LatchkeyError('UNAVAILABLE', `relay answered ${res.status}`);
    }
    const reader = res.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        drops = 0;
        yield value;
      }
      return;
    } catch (err) {
      if (signal?.aborted) throw new LatchkeyError('TIMEOUT', 'download cancelled');
      if (++drops > MAX_RESUMES)
        throw new LatchkeyError('UNAVAILABLE', 'download interrupted', { cause: err });
    } finally {
      reader.releaseLock();
    }
  }
}

async function get(
  f: FetchLike,
  url: string,
  from: number,
  signal: AbortSignal | undefined,
): Promise<Response> {
  const init: RequestInit = {
    cache: 'no-store',
    headers: from > 0 ? { range: `bytes=${from}-` } : {},
  };
  if (signal) init.signal = signal;
  try {
    return await f(url, init);
  } catch (err) {
    if (signal?.aborted) throw new LatchkeyError('TIMEOUT', 'download cancelled');
    throw new LatchkeyError('UNAVAILABLE', 'relay unreachable', { cause: err });
  }
}

/** The verified plaintext of `part`, chunk by chunk. */
async function* plaintext(
  h: FileHttp,
  part: PartToRead,
  opts: ReadOptions,
): AsyncGenerator<Uint8Array> {
  const expected = chunkedCiphertextLength(part.size);
  const lastChunk = Math.floor(part.size / CHUNK_SIZE);
  const hash = createSha256();
  let dec: ChunkedDecryptor | null = null;
  /** The next chunk to open, and the ciphertext bytes of it received so far. */
  let k = 0;
  let pending = new Uint8Array(HEADER_SIZE);
  let have = 0;
  let done = 0;
  const nextOffset = (): number => (dec ? HEADER_SIZE + k * CHUNK_CT : 0);
  opts.onProgress?.(0, part.size);
  // A resumed read starts at the chunk being filled: what was half-received is dropped.
  const source = ciphertext(
    h,
    part,
    expected,
    () => {
      have = 0;
      return nextOffset();
    },
    opts.signal,
  );
  for await (const piece of source) {
    let at = 0;
    while (at < piece.length) {
      const take = Math.min(pending.length - have, piece.length - at);
      pending.set(piece.subarray(at, at + take), have);
      have += take;
      at += take;
      if (have < pending.length) break;
      if (!dec) {
        try {
          dec = await ChunkedDecryptor.open(part.key, part.context, pending);
        } catch {
          throw decryptFailed('commitment');
        }
      } else {
        let plain: Uint8Array;
        try {
          plain = await dec.openChunk(k, pending, k === lastChunk);
        } catch {
          throw decryptFailed(`chunk ${k}`);
        }
        hash.update(plain);
        done += plain.length;
        k++;
        opts.onProgress?.(done, part.size);
        if (plain.length > 0) yield plain;
        if (k > lastChunk) {
          if (at < piece.length) throw decryptFailed('trailing data');
          break;
        }
      }
      const size = k === lastChunk ? expected - HEADER_SIZE - k * CHUNK_CT : CHUNK_CT;
      pending = new Uint8Array(size);
      have = 0;
    }
    if (k > lastChunk) break;
  }
  if (k <= lastChunk) throw decryptFailed('truncated');
  if (done !== part.size || hexOf(hash.digest()) !== part.sha256) throw decryptFailed('digest');
}

/** A stream of the verified plaintext of `part`; cancelling it stops the download. */
export function readPart(
  h: FileHttp,
  part: PartToRead,
  opts: ReadOptions = {},
): ReadableStream<Uint8Array> {
  let it: AsyncGenerator<Uint8Array> | null = null;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      it ??= plaintext(h, part, opts);
      try {
        const { done, value } = await it.next();
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (err) {
        controller.error(
          err instanceof LatchkeyError
            ? err
            : decryptFailed(err instanceof Error ? err.message : 'unknown'),
        );
      }
    },
    async cancel() {
      await it?.return(undefined);
    },
  });
}

/** Reads a whole (small) part into memory, e.g. a thumbnail. */
export async function readWhole(
  h: FileHttp,
  part: PartToRead,
  opts: ReadOptions = {},
): Promise<Uint8Array> {
  const out = new Uint8Array(part.size);
  let at = 0;
  const reader = readPart(h, part, opts).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return out;
    out.set(value, at);
    at += value.length;
  }
}
