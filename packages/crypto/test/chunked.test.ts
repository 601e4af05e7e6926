/**
 * @latchkey/crypto/chunked against every Wycheproof c2sp_chunked_encryption_aes_256_gcm_test.json
 * vector (read at run time from the shared folder), applied as Wycheproof's guide to them says
 * (c2sp_chunked_encryption.md in the doc folder of C2SP/wycheproof), on each AES-GCM backend: one-shot and streaming decryption (input fed in
 * odd-sized pieces), the derivation (aeadKey, baseNonce, commitment), re-encryption with the
 * vector's salt, length authentication through the final chunk, and random access.
 */
import { createHash } from 'node:crypto';
import { inflateSync } from 'node:zlib';
import { afterEach, expect, it, vi } from 'vitest';
import { native } from '../src/_native.ts';
import { deriveChunkedKeys } from '../src/_chunked-format.ts';
import { setAeadBackend } from '../src/aead.ts';
import type { AeadBackend } from '../src/aead.ts';
import {
  AEAD_NAME,
  CHUNK_SIZE,
  ChunkedDecryptError,
  ChunkedDecryptor,
  HEADER_SIZE,
  TAG_SIZE,
  chunkSpan,
  chunkedPlaintextLength,
  decryptChunked,
  decryptStream,
  encryptChunked,
  encryptStream,
  finalChunkIndex,
} from '../src/node/chunked.ts';
import type { ChunkedDecryptReason } from '../src/node/chunked.ts';
import {
  ODD_PIECES,
  concat,
  expectKeepsFailing,
  runStream,
  sameBytes,
} from './_chunked-helpers.ts';
import { hex, toHex } from './_hex.ts';
import { describeWithSharedVectors, readSharedVectors } from './_shared-vectors.ts';
import type { WycheproofFile, WycheproofTest } from './_shared-vectors.ts';

interface ChunkedTest extends WycheproofTest {
  key: string;
  ctx: string;
  ct: string;
  aeadKey?: string;
  baseNonce?: string;
  msgLength?: number;
  msgSha512?: string;
}
interface ChunkedGroup {
  type: string;
  aead: string;
  sha: string;
  tests: ChunkedTest[];
}

const BACKENDS = ['node', 'webcrypto', 'noble'] as const satisfies readonly AeadBackend[];
const BLOCK = CHUNK_SIZE + TAG_SIZE;
const sha512Hex = (bytes: Uint8Array): string => createHash('sha512').update(bytes).digest('hex');

/**
 * The failure a vector must give, from its flags and its length alone: a key of the wrong size,
 * then the header (short, or its commitment), then a length no message has (computed here
 * independently of the code under test), and otherwise a chunk that does not authenticate
 * (corrupted, reordered, cut inside its body, or with extra bytes that leave a plausible length:
 * those are indistinguishable from a corrupted final chunk without trial decryptions).
 */
function expectedReason(t: ChunkedTest, ctLength: number): ChunkedDecryptReason {
  if (t.flags.includes('InvalidKeySize')) return 'key-size';
  if (t.flags.includes('HeaderFailure')) return 'header';
  const body = ctLength - HEADER_SIZE;
  if (body < TAG_SIZE || body % BLOCK < TAG_SIZE) return 'truncated';
  return 'chunk';
}

async function reasonOf(promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ChunkedDecryptError);
  expect((err as Error).message).toBe(
    `chunked decryption failed: ${(err as ChunkedDecryptError).reason}`,
  );
  return (err as ChunkedDecryptError).reason;
}

/** Authenticates the message length by opening only the final chunk (a seek from the end). */
async function authenticateLength(
  key: Uint8Array,
  ctx: Uint8Array,
  ct: Uint8Array,
): Promise<number> {
  const decryptor = await ChunkedDecryptor.open(key, ctx, ct.subarray(0, HEADER_SIZE));
  const n = chunkedPlaintextLength(ct.length);
  const span = chunkSpan(n, n, n);
  expect(span.firstChunk).toBe(finalChunkIndex(n));
  expect(span.ctEnd).toBe(ct.length);
  await decryptor.openChunk(span.firstChunk, ct.subarray(span.ctStart, span.ctEnd), true);
  return n;
}

describeWithSharedVectors('Wycheproof c2sp_chunked_encryption_aes_256_gcm_test.json', () => {
  const file = readSharedVectors<WycheproofFile<ChunkedGroup>>(
    'c2sp_chunked_encryption_aes_256_gcm_test.json',
  );
  const cases = file.testGroups.flatMap((g) => g.tests);
  const inputs = new Map(cases.map((t) => [t.tcId, inflateSync(hex(t.ct))]));

  afterEach(() => {
    setAeadBackend('auto');
    vi.restoreAllMocks();
  });

  it('is Cobblestone-256 with all 35 cases (10 valid, 25 invalid)', () => {
    expect(file.algorithm).toBe('Cobblestone-256');
    for (const g of file.testGroups) {
      expect([g.type, g.aead, g.sha]).toEqual(['ChunkedEncryption', AEAD_NAME, 'SHA-512']);
    }
    expect(cases).toHaveLength(file.numberOfTests);
    expect(cases.filter((t) => t.result === 'valid')).toHaveLength(10);
    expect(cases.filter((t) => t.result === 'invalid')).toHaveLength(25);
  });

  for (const t of cases) {
    const label = `tcId ${t.tcId} ${t.result} [${t.flags.join(',')}] ${t.comment}`;
    const key = hex(t.key);
    const ctx = hex(t.ctx);

    if (t.aeadKey !== undefined && t.baseNonce !== undefined) {
      it(`${label}: derivation gives aeadKey, baseNonce and the commitment`, () => {
        const ct = inputs.get(t.tcId)!;
        const keys = deriveChunkedKeys(key, ct.subarray(0, 24), ctx);
        expect(toHex(keys.key)).toBe(t.aeadKey);
        expect(toHex(keys.baseNonce)).toBe(t.baseNonce);
        // A ModifiedCiphertext vector may have its commitment tampered with; the others keep it.
        if (!t.flags.includes('HeaderFailure')) {
          expect(toHex(keys.commitment)).toBe(toHex(ct.subarray(24, HEADER_SIZE)));
        }
      });
    }

    for (const backend of BACKENDS) {
      it(`${backend}: ${label}`, async () => {
        setAeadBackend(backend);
        const ct = inputs.get(t.tcId)!;
        const stream = await runStream(decryptStream(key, ctx), ct, ODD_PIECES);
        if (t.result === 'valid') {
          const msg = await decryptChunked(key, ctx, ct);
          expect(msg).toHaveLength(t.msgLength!);
          expect(sha512Hex(msg)).toBe(t.msgSha512);
          expect(stream.error).toBeUndefined();
          expect(sameBytes(stream.out, msg)).toBe(true);
          // The salt can be injected, so encryption must reproduce the vector exactly.
          const salt = ct.subarray(0, 24);
          expect(sameBytes(await encryptChunked(key, ctx, msg, salt), ct)).toBe(true);
          const encrypted = await runStream(encryptStream(key, ctx, salt), msg, ODD_PIECES);
          expect(encrypted.error).toBeUndefined();
          expect(sameBytes(encrypted.out, ct)).toBe(true);
          expect(await authenticateLength(key, ctx, ct)).toBe(msg.length);
          // Random access: a range across a chunk boundary, from its chunks alone.
          const start = Math.max(0, msg.length - CHUNK_SIZE - 5);
          const span = chunkSpan(start, msg.length, msg.length);
          const decryptor = await ChunkedDecryptor.open(key, ctx, ct.subarray(0, HEADER_SIZE));
          const parts: Uint8Array[] = [];
          for (let k = span.firstChunk; k <= span.lastChunk; k++) {
            const at = HEADER_SIZE + k * BLOCK;
            const final = k === finalChunkIndex(msg.length);
            parts.push(
              await decryptor.openChunk(
                k,
                ct.subarray(at, Math.min(at + BLOCK, span.ctEnd)),
                final,
              ),
            );
          }
          const joined = concat(parts);
          const from = start - span.firstChunk * CHUNK_SIZE;
          expect(
            sameBytes(joined.subarray(from, from + msg.length - start), msg.subarray(start)),
          ).toBe(true);
          return;
        }

        const reason = expectedReason(t, ct.length);
        expect(await reasonOf(decryptChunked(key, ctx, ct))).toBe(reason);
        expect(stream.error).toBeInstanceOf(ChunkedDecryptError);
        expect((stream.error as ChunkedDecryptError).reason).toBe(reason);
        await expectKeepsFailing(stream);

        if (t.flags.includes('PartialPlaintext')) {
          // At most the valid prefix, in whole chunks that each authenticate on their own.
          expect(stream.out.length).toBeLessThanOrEqual(t.msgLength!);
          expect(stream.out.length % CHUNK_SIZE).toBe(0);
          if (stream.out.length === t.msgLength) expect(sha512Hex(stream.out)).toBe(t.msgSha512);
          const decryptor = await ChunkedDecryptor.open(key, ctx, ct.subarray(0, HEADER_SIZE));
          for (let k = 0; k < stream.out.length / CHUNK_SIZE; k++) {
            const at = HEADER_SIZE + k * BLOCK;
            expect(await decryptor.openChunk(k, ct.subarray(at, at + BLOCK), false)).toEqual(
              stream.out.subarray(k * CHUNK_SIZE, (k + 1) * CHUNK_SIZE),
            );
          }
        } else {
          expect(stream.out).toHaveLength(0);
        }

        if (t.flags.includes('HeaderFailure')) {
          await expect(
            ChunkedDecryptor.open(key, ctx, ct.subarray(0, HEADER_SIZE)),
          ).rejects.toMatchObject({ reason });
          return;
        }
        if (t.flags.includes('ValidFinalChunk')) {
          await expect(authenticateLength(key, ctx, ct)).resolves.toBeGreaterThanOrEqual(0);
        } else {
          await expect(authenticateLength(key, ctx, ct)).rejects.toBeInstanceOf(
            ChunkedDecryptError,
          );
        }
      });
    }

    if (t.flags.includes('HeaderFailure')) {
      it(`${label}: rejected before any chunk is decrypted`, async () => {
        setAeadBackend('node');
        const decrypt = vi.spyOn(native.aead!, 'decrypt');
        const ct = inputs.get(t.tcId)!;
        await expect(decryptChunked(key, ctx, ct)).rejects.toBeInstanceOf(ChunkedDecryptError);
        const stream = await runStream(decryptStream(key, ctx), ct, [ct.length || 1]);
        expect(stream.error).toBeInstanceOf(ChunkedDecryptError);
        expect(stream.out).toHaveLength(0);
        expect(decrypt).not.toHaveBeenCalled();
      });
    }
  }
});
