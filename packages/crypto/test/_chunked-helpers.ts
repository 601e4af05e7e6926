/**
 * Helpers of the chunked-encryption tests: run a TransformStream over input written in pieces of
 * given sizes and collect what it released before it ended or failed, and a cheap deterministic
 * filler for large plaintexts.
 */
import { expect } from 'vitest';

export interface StreamRun {
  /** Everything the readable side released, in order. */
  out: Uint8Array;
  /** Why the readable side failed, or undefined if it ended cleanly. */
  error: unknown;
  reader: ReadableStreamDefaultReader<Uint8Array>;
  writer: WritableStreamDefaultWriter<Uint8Array>;
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/**
 * Writes `input` into `stream` in pieces whose sizes cycle through `sizes` (reading concurrently)
 * and closes it; a failure on either side is recorded, not thrown. When the stream failed, the
 * writing side must have failed too, with the same error.
 */
export async function runStream(
  stream: TransformStream<Uint8Array, Uint8Array>,
  input: Uint8Array,
  sizes: readonly number[],
): Promise<StreamRun> {
  const reader = stream.readable.getReader();
  const writer = stream.writable.getWriter();
  const parts: Uint8Array[] = [];
  const reading = (async () => {
    for (;;) {
      const r = await reader.read();
      if (r.done) return;
      parts.push(r.value);
    }
  })();
  const writing = (async () => {
    let offset = 0;
    for (let i = 0; offset < input.length; i++) {
      const n = sizes[i % sizes.length]!;
      await writer.write(input.subarray(offset, offset + n));
      offset += n;
    }
    await writer.close();
  })();
  const [read, written] = await Promise.allSettled([reading, writing]);
  const error = read.status === 'rejected' ? (read.reason as unknown) : undefined;
  if (error !== undefined) {
    expect(written.status).toBe('rejected');
    expect((written as PromiseRejectedResult).reason).toBe(error);
  } else {
    expect(written.status).toBe('fulfilled');
  }
  return { out: concat(parts), error, reader, writer };
}

/** After a failure: reads and writes keep rejecting with the same error; no clean end. */
export async function expectKeepsFailing(run: StreamRun): Promise<void> {
  for (let i = 0; i < 2; i++) {
    await expect(run.reader.read()).rejects.toBe(run.error);
    await expect(run.writer.write(new Uint8Array(20_000))).rejects.toBe(run.error);
  }
}

/** `n` bytes of a fast xorshift sequence from `seed` (test data, not randomness). */
export function filler(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Piece sizes that straddle every boundary (header, tag, chunk, encrypted chunk). */
export const ODD_PIECES = [1, 55, 3, 16_399, 16_401, 7, 16_417, 40_000, 16, 57] as const;

/** Byte equality that stays fast for MiB-sized arrays (vitest's toEqual walks them slowly). */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(
    Buffer.from(b.buffer, b.byteOffset, b.length),
  );
}
