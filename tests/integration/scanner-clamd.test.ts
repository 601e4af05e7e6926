/**
 * The scanner's clamd client (apps/scanner/src/clamd.ts) against a real clamd with the test's own
 * signature database (_clamd.ts): a clean stream, the infected file however it is chunked, an
 * empty stream, streams over StreamMaxLength (cut by the client, or refused by clamd), a source
 * that fails half-way, and clamd down (unreachable, then back).
 */
import { afterAll, describe, expect, it } from 'vitest';
import {
  ClamdClient,
  ClamdUnreachableError,
  type ClamdResult,
} from '../../apps/scanner/src/clamd.ts';
import { INFECTED_FILE, REPORTED_SIGNATURE, startClamd } from './_clamd.ts';

const clamd = await startClamd('scanner clamd client', { streamMaxLength: 1024 * 1024 });
afterAll(() => clamd?.close());

/** A stream of `bytes` in pieces of `size`, recording whether it was cancelled. */
function pieces(
  bytes: Uint8Array,
  size: number,
): ReadableStream<Uint8Array> & { cancelled: boolean } {
  let off = 0;
  const s = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (off >= bytes.length) {
        controller.close();
        return;
      }
      controller.enqueue(bytes.slice(off, off + size));
      off += size;
    },
    cancel() {
      (s as { cancelled: boolean }).cancelled = true;
    },
  }) as ReadableStream<Uint8Array> & { cancelled: boolean };
  s.cancelled = false;
  return s;
}

describe.skipIf(!clamd)('clamd client against a real clamd', () => {
  const client = (over: { streamMaxLength?: number; chunkBytes?: number } = {}) =>
    new ClamdClient({ address: { path: clamd!.socket }, timeoutMs: 20_000, ...over });

  it('judges a clean stream clean, and an empty one too', async () => {
    const clean = new TextEncoder().encode('An invoice, nothing else.\n'.repeat(1000));
    expect(await client().scan(pieces(clean, 4096))).toEqual({ status: 'clean' });
    expect(await client().scan(pieces(new Uint8Array(0), 1))).toEqual({ status: 'clean' });
  });

  it('finds the test signature whatever the chunking, and names it', async () => {
    const infected: ClamdResult = { status: 'infected', signature: REPORTED_SIGNATURE };
    expect(await client().scan(pieces(INFECTED_FILE, INFECTED_FILE.length))).toEqual(infected);
    // One byte per read, and clamd chunks of 5 bytes: the framing carries every byte in order.
    expect(await client({ chunkBytes: 5 }).scan(pieces(INFECTED_FILE, 1))).toEqual(infected);
    // An async iterable works as well as a stream.
    async function* gen(): AsyncGenerator<Uint8Array> {
      yield INFECTED_FILE.subarray(0, 10);
      yield INFECTED_FILE.subarray(10);
    }
    expect(await client().scan(gen())).toEqual(infected);
    // The same bytes with one more byte are another file: the signature is exact.
    const other = new Uint8Array(INFECTED_FILE.length + 1);
    other.set(INFECTED_FILE);
    expect(await client().scan(pieces(other, 64))).toEqual({ status: 'clean' });
  });

  it('cuts a stream over its StreamMaxLength and cancels the source, without sending the rest', async () => {
    const big = new Uint8Array(300 * 1024).fill(0x41);
    const src = pieces(big, 64 * 1024);
    const r = await client({ streamMaxLength: 100 * 1024 }).scan(src);
    expect(r).toMatchObject({ status: 'error', code: 'TOO_LARGE' });
    expect(src.cancelled).toBe(true);
  });

  it("reads clamd's own refusal of a stream over clamd's StreamMaxLength as an error, never clean", async () => {
    // The client is told a larger limit than clamd has (a misconfiguration): clamd stops
    // reading at its limit, answers `INSTREAM size limit exceeded. ERROR` and closes. The
    // client reads that answer (TOO_LARGE) or, when its next write meets the closed socket
    // first, says that clamd cut the stream (CLAMD_ERROR). Either way: an error, not a verdict.
    const big = new Uint8Array(clamd!.streamMaxLength + 512 * 1024).fill(0x42);
    for (let i = 0; i < 5; i++) {
      const r = await client({ streamMaxLength: 64 * 1024 * 1024 }).scan(pieces(big, 64 * 1024));
      expect(r.status).toBe('error');
      const { code, detail } = r as { code: string; detail: string };
      if (code === 'TOO_LARGE') expect(detail).toMatch(/size limit exceeded/);
      else expect(detail).toMatch(/closed the stream before its end .*StreamMaxLength/);
    }
  });

  it('passes on a failing source as its own error (nothing judged)', async () => {
    let n = 0;
    const failing = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (n++ < 3) controller.enqueue(new Uint8Array(1000));
        else controller.error(new Error('chunk failed to open'));
      },
    });
    await expect(client().scan(failing)).rejects.toThrow('chunk failed to open');
  });

  it('reports the engine version', async () => {
    expect(await client().version()).toMatch(/^ClamAV \d+\.\d+/);
    expect(await client().ping()).toBe(true);
  });

  it('says unreachable (retryable) when clamd is down, and works again once it is back', async () => {
    await clamd!.stop();
    try {
      const err = await client()
        .scan(pieces(INFECTED_FILE, 16))
        .then(
          () => null,
          (e: unknown) => e,
        );
      expect(err).toBeInstanceOf(ClamdUnreachableError);
      expect(['ENOENT', 'ECONNREFUSED']).toContain((err as ClamdUnreachableError).code);
      expect(await client().ping()).toBe(false);
      // A TCP address where nothing listens is unreachable too.
      const tcp = new ClamdClient({ address: { host: '127.0.0.1', port: 9 }, timeoutMs: 5000 });
      await expect(tcp.scan(pieces(INFECTED_FILE, 16))).rejects.toBeInstanceOf(
        ClamdUnreachableError,
      );
    } finally {
      await clamd!.start();
    }
    expect(await client().scan(pieces(INFECTED_FILE, 16))).toEqual({
      status: 'infected',
      signature: REPORTED_SIGNATURE,
    });
  });
});
