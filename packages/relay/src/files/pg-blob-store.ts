/**
 * The PostgreSQL blob store: a blob's ciphertext in rows of table `blob_parts` (pg-schema.ts
 * v4), parts of at most PART_BYTES keyed by their offset, in the message database that every
 * relay of a cluster shares. Each part is its own committed INSERT, so a written part is on
 * PostgreSQL's WAL before the request's offset is recorded; a read streams part by part, never
 * holding more than one part. Loaded only through pg-store.ts (the `@latchkey/relay/postgres`
 * entry), on the message store's pool.
 */
import { Readable } from 'node:stream';
import { LatchkeyError } from '@latchkey/protocol';
import { isPgDatabaseError, type PgPool } from '@latchkey/storage/postgres';
import type { BlobStore, BlobWriter } from './blob-store.ts';

/** Largest part written (bytes): a request's body is buffered this much at most. */
export const PART_BYTES = 1024 * 1024;

function unavailable(err: unknown, what: string): LatchkeyError {
  if (LatchkeyError.is(err)) return err;
  const detail = isPgDatabaseError(err)
    ? (err.code ?? '?')
    : err instanceof Error
      ? err.name
      : typeof err;
  return new LatchkeyError('UNAVAILABLE', 'file store unavailable', {
    cause: err,
    detail: `${what}: ${detail}`,
  });
}

export class PgBlobStore implements BlobStore {
  readonly kind = 'postgres';
  readonly #pool: PgPool;

  constructor(pool: PgPool) {
    this.#pool = pool;
  }

  async openWriter(blob: string, offset: number): Promise<BlobWriter> {
    const pool = this.#pool;
    try {
      // Parts past the recorded offset were never acknowledged: the upload resumes over them.
      await pool.query('DELETE FROM blob_parts WHERE blob_id = $1 AND off >= $2', [blob, offset]);
      await pool.query(
        `UPDATE blob_parts SET data = substring(data from 1 for ($2 - off)::int)
         WHERE blob_id = $1 AND off < $2 AND off + octet_length(data) > $2`,
        [blob, offset],
      );
    } catch (err) {
      throw unavailable(err, 'open-writer');
    }
    let position = offset;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const flush = async (): Promise<void> => {
      if (pendingBytes === 0) return;
      const data = Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
      try {
        await pool.query('INSERT INTO blob_parts (blob_id, off, data) VALUES ($1, $2, $3)', [
          blob,
          position,
          data,
        ]);
      } catch (err) {
        throw unavailable(err, 'write');
      }
      position += data.length;
    };
    return {
      async write(chunk) {
        let at = 0;
        while (at < chunk.length) {
          const take = Math.min(chunk.length - at, PART_BYTES - pendingBytes);
          pending.push(chunk.subarray(at, at + take));
          pendingBytes += take;
          at += take;
          if (pendingBytes === PART_BYTES) await flush();
        }
      },
      async sync() {
        await flush();
        return position;
      },
      close: () => Promise.resolve(),
    };
  }

  async read(blob: string, start: number, end: number): Promise<Readable> {
    const pool = this.#pool;
    let stored: number;
    try {
      const r = await pool.query<{ n: number }>(
        'SELECT coalesce(max(off + octet_length(data)), 0)::bigint AS n FROM blob_parts WHERE blob_id = $1',
        [blob],
      );
      stored = Number(r.rows[0]?.n ?? 0);
    } catch (err) {
      throw unavailable(err, 'read');
    }
    if (stored < end) throw new LatchkeyError('NOT_FOUND', 'file incomplete');
    async function* parts(): AsyncGenerator<Buffer> {
      let pos = start;
      while (pos < end) {
        let r;
        try {
          r = await pool.query<{ off: number; data: Buffer }>(
            `SELECT off, data FROM blob_parts WHERE blob_id = $1 AND off <= $2
             ORDER BY off DESC LIMIT 1`,
            [blob, pos],
          );
        } catch (err) {
          throw unavailable(err, 'read');
        }
        const part = r.rows[0];
        const from = part ? pos - Number(part.off) : -1;
        if (!part || from >= part.data.length)
          throw new LatchkeyError('NOT_FOUND', 'file incomplete');
        const slice = part.data.subarray(from, Math.min(part.data.length, from + end - pos));
        pos += slice.length;
        yield slice;
      }
    }
    return Readable.from(parts(), { objectMode: false });
  }

  async delete(blobs: readonly string[]): Promise<void> {
    if (blobs.length === 0) return;
    try {
      await this.#pool.query('DELETE FROM blob_parts WHERE blob_id = ANY($1::text[])', [
        [...blobs],
      ]);
    } catch (err) {
      throw unavailable(err, 'delete');
    }
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
