/**
 * A 100 MiB message through encryptStream and decryptStream, piped (node:crypto backend): the
 * plaintext comes back exactly (SHA-256 of both sides), the ciphertext has the length the format
 * says, and the memory held in ArrayBuffers stays bounded (far below the message size, measured
 * after forced full collections too), so neither stream keeps what it already passed on.
 */
import { createHash } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { expect, it } from 'vitest';
import { chunkedCiphertextLength, decryptStream, encryptStream } from '../src/node/chunked.ts';
import { filler } from './_chunked-helpers.ts';

const MiB = 1024 * 1024;
const TOTAL = 100 * MiB;
/** Piece sizes of the source, cycled: small, odd and large writes. */
const SIZES = [MiB, 1, 65_536 + 3, 16_383, 300_001, 2 * MiB - 5];

/**
 * Full garbage collections, so that what is measured is what the streams still hold. V8 frees
 * ArrayBuffer memory after a collection in the background; a turn of the event loop and a second
 * collection let that finish before anything is read.
 */
async function collectGarbage(): Promise<void> {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  await new Promise((resolve) => setImmediate(resolve));
  gc();
}

it('round-trips 100 MiB through the streams in bounded memory', { timeout: 60_000 }, async () => {
  const key = filler(32, 11);
  const context = new TextEncoder().encode('latchkey.file.v1\u0000c\u0000m\u0000file');
  const pool = filler(2 * MiB + 16, 12);
  const inputHash = createHash('sha256');
  const outputHash = createHash('sha256');
  let produced = 0;
  let piece = 0;
  const source = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (produced === TOTAL) {
          controller.close();
          return;
        }
        const n = Math.min(SIZES[piece % SIZES.length]!, TOTAL - produced);
        const offset = (piece * 7) % 16;
        const bytes = pool.subarray(offset, offset + n);
        inputHash.update(bytes);
        controller.enqueue(bytes);
        produced += n;
        piece++;
      },
    },
    { highWaterMark: 1 },
  );
  let ctBytes = 0;
  const count = new TransformStream<Uint8Array, Uint8Array>({
    transform(bytes, controller) {
      ctBytes += bytes.length;
      controller.enqueue(bytes);
    },
  });
  await collectGarbage();
  const baseline = process.memoryUsage().arrayBuffers;
  let peak = 0;
  let retained = 0;
  let received = 0;
  let nextSample = 0;
  const started = performance.now();
  const output = source
    .pipeThrough(encryptStream(key, context))
    .pipeThrough(count)
    .pipeThrough(decryptStream(key, context));
  for await (const bytes of output as unknown as AsyncIterable<Uint8Array>) {
    outputHash.update(bytes);
    received += bytes.length;
    if (received >= nextSample) {
      peak = Math.max(peak, process.memoryUsage().arrayBuffers - baseline);
      if (nextSample % (8 * MiB) === 0) {
        await collectGarbage();
        retained = Math.max(retained, process.memoryUsage().arrayBuffers - baseline);
      }
      nextSample += MiB;
    }
  }
  const seconds = (performance.now() - started) / 1000;
  console.info(
    `[chunked-stream] 100 MiB encrypt+decrypt piped: ${seconds.toFixed(1)} s, ` +
      `ArrayBuffers peak +${(peak / MiB).toFixed(1)} MiB, after GC +${(retained / MiB).toFixed(1)} MiB`,
  );
  expect(received).toBe(TOTAL);
  expect(ctBytes).toBe(chunkedCiphertextLength(TOTAL));
  expect(outputHash.digest('hex')).toBe(inputHash.digest('hex'));
  // Live: a source piece (up to 2 MiB) and its sealed chunks in flight on each side.
  expect(retained).toBeLessThan(16 * MiB);
  // Including garbage not yet collected: still well under the message size.
  expect(peak).toBeLessThan(64 * MiB);
});
