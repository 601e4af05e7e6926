/**
 * Properties of @latchkey/crypto/chunked on every AES-GCM backend (fast-check): round trips of
 * every length class through one-shot, stream and random-access paths giving identical bytes;
 * tampering, truncation, extension, reordering, a wrong key or context all fail, and a stream
 * never releases plaintext past the first bad chunk; resealing; the 2^38 counter limit; misuse.
 */
import fc from 'fast-check';
import { expand } from '@noble/hashes/hkdf.js';
import { sha512 } from '@noble/hashes/sha2.js';
import { afterEach, describe, expect, it } from 'vitest';
import { chunkNonce, hkdfExpandSha512 } from '../src/_chunked-format.ts';
import { aeadBackend, setAeadBackend } from '../src/aead.ts';
import {
  CHUNK_SIZE,
  ChunkedDecryptError,
  ChunkedDecryptor,
  ChunkedEncryptor,
  HEADER_SIZE,
  TAG_SIZE,
  chunkSpan,
  chunkedCiphertextLength,
  chunkedPlaintextLength,
  decryptChunked,
  decryptStream,
  encryptChunked,
  encryptStream,
  finalChunkIndex,
} from '../src/node/chunked.ts';
import { ODD_PIECES, filler, runStream, sameBytes } from './_chunked-helpers.ts';

const BLOCK = CHUNK_SIZE + TAG_SIZE;
const BACKENDS = ['node', 'webcrypto', 'noble'] as const;
const key = filler(32, 1);
const ctx = new TextEncoder().encode('latchkey.file.v1\u0000c\u0000m\u0000file');

/** Lengths around every boundary, and some anywhere up to three chunks. */
const lengths = fc.oneof(
  fc.constantFrom(
    0,
    1,
    CHUNK_SIZE - 1,
    CHUNK_SIZE,
    CHUNK_SIZE + 1,
    2 * CHUNK_SIZE,
    2 * CHUNK_SIZE + 7,
  ),
  fc.nat(3 * CHUNK_SIZE + 100),
);
const pieces = fc.array(fc.integer({ min: 1, max: 2 * BLOCK + 3 }), { minLength: 1, maxLength: 6 });

afterEach(() => setAeadBackend('auto'));

it('runs on node:crypto through the node entry', () => {
  expect(aeadBackend()).toBe('node');
});

describe.each(BACKENDS)('on %s', (backend) => {
  it('round-trips every length the same way through one-shot, stream and random access', async () => {
    setAeadBackend(backend);
    await fc.assert(
      fc.asyncProperty(
        lengths,
        fc.uint8Array({ maxLength: 40 }),
        pieces,
        async (n, context, sizes) => {
          const plain = filler(n, n + 7);
          const enc = await ChunkedEncryptor.create(key, context);
          const salt = enc.header.subarray(0, 24);
          const ct = await encryptChunked(key, context, plain, salt);
          expect(ct).toHaveLength(chunkedCiphertextLength(n));
          expect(chunkedPlaintextLength(ct.length)).toBe(n);
          expect(sameBytes(ct.subarray(0, HEADER_SIZE), enc.header)).toBe(true);
          // Random access, chunks sealed in reverse order: the same bytes.
          const last = finalChunkIndex(n);
          for (let k = last; k >= 0; k--) {
            const part = plain.subarray(k * CHUNK_SIZE, Math.min((k + 1) * CHUNK_SIZE, n));
            const sealed = await enc.sealChunk(k, part, k === last);
            expect(
              sameBytes(
                sealed,
                ct.subarray(HEADER_SIZE + k * BLOCK, HEADER_SIZE + k * BLOCK + sealed.length),
              ),
            ).toBe(true);
          }
          const streamed = await runStream(encryptStream(key, context, salt), plain, sizes);
          expect(sameBytes(streamed.out, ct)).toBe(true);
          expect(sameBytes(await decryptChunked(key, context, ct), plain)).toBe(true);
          const opened = await runStream(decryptStream(key, context), ct, sizes);
          expect(opened.error).toBeUndefined();
          expect(sameBytes(opened.out, plain)).toBe(true);
        },
      ),
      { numRuns: 25 },
    );
  });

  it('fails on any flipped bit, and a stream releases only the chunks before it', async () => {
    setAeadBackend(backend);
    const plain = filler(3 * CHUNK_SIZE + 5, 3);
    const ct = await encryptChunked(key, ctx, plain);
    await fc.assert(
      fc.asyncProperty(fc.nat(ct.length - 1), fc.nat(7), pieces, async (at, bit, sizes) => {
        const bad = ct.slice();
        bad[at]! ^= 1 << bit;
        const reason = at < HEADER_SIZE ? 'header' : 'chunk';
        await expect(decryptChunked(key, ctx, bad)).rejects.toMatchObject({ reason });
        const run = await runStream(decryptStream(key, ctx), bad, sizes);
        expect(run.error).toMatchObject({ reason });
        const goodChunks = at < HEADER_SIZE ? 0 : Math.floor((at - HEADER_SIZE) / BLOCK);
        expect(run.out.length).toBeLessThanOrEqual(goodChunks * CHUNK_SIZE);
        expect(sameBytes(run.out, plain.subarray(0, run.out.length))).toBe(true);
      }),
      { numRuns: 40 },
    );
  });

  it('fails when cut short or extended anywhere', async () => {
    setAeadBackend(backend);
    const plain = filler(2 * CHUNK_SIZE + 100, 4);
    const ct = await encryptChunked(key, ctx, plain);
    const cuts = fc.oneof(
      fc.nat(ct.length - 1),
      fc.constantFrom(0, 55, 56, 72, 56 + BLOCK, 56 + 2 * BLOCK),
    );
    await fc.assert(
      fc.asyncProperty(cuts, async (cut) => {
        const short = ct.subarray(0, cut);
        await expect(decryptChunked(key, ctx, short)).rejects.toBeInstanceOf(ChunkedDecryptError);
        const run = await runStream(decryptStream(key, ctx), short, ODD_PIECES);
        expect(run.error).toBeInstanceOf(ChunkedDecryptError);
        expect(sameBytes(run.out, plain.subarray(0, run.out.length))).toBe(true);
      }),
      { numRuns: 30 },
    );
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 2 * BLOCK + 1 }), async (extra) => {
        const long = new Uint8Array(ct.length + extra.length);
        long.set(ct);
        long.set(extra, ct.length);
        await expect(decryptChunked(key, ctx, long)).rejects.toBeInstanceOf(ChunkedDecryptError);
        const run = await runStream(decryptStream(key, ctx), long, ODD_PIECES);
        expect(run.error).toBeInstanceOf(ChunkedDecryptError);
        // Extra bytes change which bytes form the final chunk; the full ones before stay valid.
        expect(run.out.length).toBeLessThanOrEqual(2 * CHUNK_SIZE);
      }),
      { numRuns: 30 },
    );
  });

  it('fails on swapped or dropped chunks, another message spliced in, wrong key or context', async () => {
    setAeadBackend(backend);
    const plain = filler(2 * CHUNK_SIZE + 10, 5);
    const ct = await encryptChunked(key, ctx, plain);
    const chunk = (c: Uint8Array, k: number): Uint8Array =>
      c.subarray(HEADER_SIZE + k * BLOCK, Math.min(HEADER_SIZE + (k + 1) * BLOCK, c.length));
    const join = (...parts: Uint8Array[]): Uint8Array => Buffer.concat(parts);
    const header = ct.subarray(0, HEADER_SIZE);
    const swapped = join(header, chunk(ct, 1), chunk(ct, 0), chunk(ct, 2));
    const dropped = join(header, chunk(ct, 0), chunk(ct, 2));
    const other = await encryptChunked(key, ctx, plain); // same key and context, another salt
    const spliced = join(header, chunk(ct, 0), chunk(other, 1), chunk(ct, 2));
    for (const bad of [swapped, dropped, spliced]) {
      await expect(decryptChunked(key, ctx, bad)).rejects.toMatchObject({ reason: 'chunk' });
    }
    const wrongKey = filler(32, 99);
    await expect(decryptChunked(wrongKey, ctx, ct)).rejects.toMatchObject({ reason: 'header' });
    await expect(decryptChunked(key, ctx.subarray(1), ct)).rejects.toMatchObject({
      reason: 'header',
    });
    await expect(decryptChunked(key, ctx, ct.subarray(0, 55))).rejects.toMatchObject({
      reason: 'header',
    });
    await expect(decryptChunked(key.subarray(1), ctx, ct)).rejects.toMatchObject({
      reason: 'key-size',
    });
  });

  it('reseals a chunk with the same salt to identical bytes, and refuses other bytes', async () => {
    setAeadBackend(backend);
    const salt = filler(24, 6);
    const a = await ChunkedEncryptor.create(key, ctx, salt);
    const b = await ChunkedEncryptor.create(key, ctx, salt);
    const full = filler(CHUNK_SIZE, 7);
    const first = await a.sealChunk(3, full, false);
    expect(await a.sealChunk(3, full, false)).toEqual(first);
    expect(await b.sealChunk(3, full, false)).toEqual(first);
    expect(a.header).toEqual(b.header);
    const other = full.slice();
    other[0]! ^= 1;
    await expect(a.sealChunk(3, other, false)).rejects.toThrow(/nonce reuse/);
    // Another instance cannot know (documented): same salt, other bytes, other tag.
    expect(await b.sealChunk(4, other, false)).not.toEqual(await a.sealChunk(4, full, false));
    await a.sealChunk(5, new Uint8Array(9), true);
    await expect(a.sealChunk(6, full, false)).rejects.toThrow(RangeError);
    await expect(a.sealChunk(4, new Uint8Array(1), true)).rejects.toThrow(RangeError);
    await expect(a.sealChunk(5, new Uint8Array(8), true)).rejects.toThrow(/nonce reuse/);
    expect(await a.sealChunk(5, new Uint8Array(9), true)).toHaveLength(9 + TAG_SIZE);
    const header = a.header;
    header.fill(0);
    expect(a.header).toEqual(b.header);
  });
});

describe('chunk numbers, nonces and the 2^38 limit', () => {
  it('XORs the index into the last 5 bytes of the base nonce, big-endian', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 12, maxLength: 12 }),
        fc.integer({ min: 0, max: 2 ** 38 - 1 }),
        (base, index) => {
          const expected = BigInt(`0x${Buffer.from(base).toString('hex')}`) ^ BigInt(index);
          const got = BigInt(`0x${Buffer.from(chunkNonce(base, index)).toString('hex')}`);
          expect(got).toBe(expected);
        },
      ),
    );
  });

  it('aborts at chunk 2^38 when sealing and opening', async () => {
    const enc = await ChunkedEncryptor.create(key, ctx);
    const dec = await ChunkedDecryptor.open(key, ctx, enc.header);
    const top = 2 ** 38 - 1;
    const sealed = await enc.sealChunk(top, new Uint8Array(3), true);
    expect(await dec.openChunk(top, sealed, true)).toEqual(new Uint8Array(3));
    await expect(enc.sealChunk(2 ** 38, new Uint8Array(3), true)).rejects.toThrow(RangeError);
    await expect(dec.openChunk(2 ** 38, sealed, true)).rejects.toThrow(RangeError);
    expect(() => chunkedCiphertextLength(2 ** 52)).toThrow(RangeError);
    expect(chunkedCiphertextLength(2 ** 52 - 1)).toBe(
      HEADER_SIZE + 2 ** 52 - 1 + 2 ** 38 * TAG_SIZE,
    );
    expect(() => chunkedPlaintextLength(HEADER_SIZE + 2 ** 38 * BLOCK + TAG_SIZE)).toThrow(
      ChunkedDecryptError,
    );
  });

  it('says trailing for a chunk after an authenticated final one, truncated for a full final one', async () => {
    const plain = filler(CHUNK_SIZE + 3, 8);
    const ct = await encryptChunked(key, ctx, plain);
    const dec = await ChunkedDecryptor.open(key, ctx, ct.subarray(0, HEADER_SIZE));
    const full = ct.subarray(HEADER_SIZE, HEADER_SIZE + BLOCK);
    await expect(dec.openChunk(0, full, true)).rejects.toMatchObject({ reason: 'truncated' });
    await expect(
      dec.openChunk(1, ct.subarray(HEADER_SIZE + BLOCK, HEADER_SIZE + BLOCK + 15), true),
    ).rejects.toMatchObject({ reason: 'truncated' });
    expect(await dec.openChunk(1, ct.subarray(HEADER_SIZE + BLOCK), false)).toEqual(
      plain.subarray(CHUNK_SIZE),
    );
    await expect(dec.openChunk(2, full, false)).rejects.toMatchObject({ reason: 'trailing' });
    expect(await dec.openChunk(0, full, false)).toEqual(plain.subarray(0, CHUNK_SIZE));
    await expect(dec.openChunk(1, full, false)).rejects.toMatchObject({ reason: 'chunk' });
  });
});

describe('chunkSpan and lengths', () => {
  it('names the chunks and ciphertext bytes holding any range', async () => {
    const plain = filler(3 * CHUNK_SIZE + 11, 9);
    const ct = await encryptChunked(key, ctx, plain);
    const dec = await ChunkedDecryptor.open(key, ctx, ct.subarray(0, HEADER_SIZE));
    const last = finalChunkIndex(plain.length);
    await fc.assert(
      fc.asyncProperty(fc.nat(plain.length), fc.nat(plain.length), async (x, y) => {
        const [start, end] = x <= y ? [x, y] : [y, x];
        const span = chunkSpan(start, end, plain.length);
        expect(span.ctStart).toBe(HEADER_SIZE + span.firstChunk * BLOCK);
        const parts: Uint8Array[] = [];
        for (let k = span.firstChunk; k <= span.lastChunk; k++) {
          const at = HEADER_SIZE + k * BLOCK - span.ctStart;
          const slice = ct.subarray(span.ctStart, span.ctEnd).subarray(at, at + BLOCK);
          parts.push(await dec.openChunk(k, slice, k === last));
        }
        const got = Buffer.concat(parts);
        expect(got.length).toBeGreaterThanOrEqual(end - start);
        const from = start - span.firstChunk * CHUNK_SIZE;
        expect(sameBytes(got.subarray(from, from + end - start), plain.subarray(start, end))).toBe(
          true,
        );
        expect(span.ctEnd - span.ctStart).toBeLessThanOrEqual(
          (span.lastChunk - span.firstChunk + 1) * BLOCK,
        );
      }),
      { numRuns: 60 },
    );
    expect(() => chunkSpan(2, 1, 5)).toThrow(RangeError);
    expect(() => chunkSpan(0, 6, 5)).toThrow(RangeError);
    expect(() => chunkSpan(0.5, 1, 5)).toThrow(RangeError);
  });

  it('maps lengths both ways and rejects the impossible ones as truncated', () => {
    fc.assert(
      fc.property(fc.nat(2 ** 40), (n) => {
        expect(chunkedPlaintextLength(chunkedCiphertextLength(n))).toBe(n);
      }),
    );
    for (const bad of [0, 55, 56, 71, 56 + BLOCK, 56 + BLOCK + 15, 56 + 2 * BLOCK]) {
      expect(() => chunkedPlaintextLength(bad)).toThrow(ChunkedDecryptError);
    }
    expect(chunkedPlaintextLength(72)).toBe(0);
    expect(chunkedPlaintextLength(56 + BLOCK + 16)).toBe(CHUNK_SIZE);
  });
});

describe('HKDF-Expand SHA-512', () => {
  it("equals @noble/hashes' expand wherever that accepts the key (64 bytes and more)", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 64, maxLength: 100 }),
        fc.uint8Array({ maxLength: 200 }),
        fc.integer({ min: 0, max: 300 }),
        (prk, info, length) => {
          expect(hkdfExpandSha512(prk, info, length)).toEqual(expand(sha512, prk, info, length));
        },
      ),
    );
    expect(() => hkdfExpandSha512(key, ctx, 255 * 64 + 1)).toThrow(RangeError);
  });
});

describe('misuse', () => {
  it('throws TypeError for wrong types and RangeError for wrong sizes', async () => {
    const notBytes = 'x' as unknown as Uint8Array;
    await expect(ChunkedEncryptor.create(notBytes, ctx)).rejects.toThrow(TypeError);
    await expect(ChunkedEncryptor.create(key.subarray(1), ctx)).rejects.toThrow(RangeError);
    await expect(ChunkedEncryptor.create(key, notBytes)).rejects.toThrow(TypeError);
    await expect(ChunkedEncryptor.create(key, new Uint8Array(4097))).rejects.toThrow(RangeError);
    await expect(ChunkedEncryptor.create(key, ctx, new Uint8Array(23))).rejects.toThrow(RangeError);
    await expect(ChunkedDecryptor.open(key, ctx, notBytes)).rejects.toThrow(TypeError);
    const enc = await ChunkedEncryptor.create(key, ctx);
    await expect(enc.sealChunk(0, new Uint8Array(10), false)).rejects.toThrow(RangeError);
    await expect(enc.sealChunk(0, new Uint8Array(CHUNK_SIZE), true)).rejects.toThrow(RangeError);
    await expect(enc.sealChunk(-1, new Uint8Array(1), true)).rejects.toThrow(RangeError);
    await expect(enc.sealChunk(0, new Uint8Array(1), 1 as unknown as boolean)).rejects.toThrow(
      TypeError,
    );
    const dec = await ChunkedDecryptor.open(key, ctx, enc.header);
    await expect(dec.openChunk(0, new Uint8Array(BLOCK + 1), false)).rejects.toThrow(RangeError);
    expect(() => encryptStream(key.subarray(1), ctx)).toThrow(RangeError);
    expect(() => decryptStream(notBytes, ctx)).toThrow(TypeError);
    const run = await runStream(encryptStream(key, ctx), new Uint8Array(0), [1]);
    expect(run.out).toHaveLength(HEADER_SIZE + TAG_SIZE);
    const stream = encryptStream(key, ctx);
    const reader = stream.readable.getReader();
    const reads = reader.read().then(async () => reader.read());
    const writer = stream.writable.getWriter();
    await expect(writer.write('abc' as unknown as Uint8Array)).rejects.toThrow(TypeError);
    await expect(reads).rejects.toThrow(TypeError);
  });
});
