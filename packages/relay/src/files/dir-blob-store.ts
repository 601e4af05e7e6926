/**
 * The directory blob store: one file per blob, named by its id, in a directory of its own
 * (0700, files 0600). A write request truncates the file to its durable offset, appends, then
 * fsyncs the file and (when the file is new or complete) the directory before the offset is
 * recorded, so an offset the metadata holds is always on disk. Deletions fsync the directory.
 */
import { constants, createReadStream, mkdirSync, chmodSync } from 'node:fs';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { BlobId, LatchkeyError } from '@latchkey/protocol';
import type { BlobStore, BlobWriter } from './blob-store.ts';

function unavailable(err: unknown, what: string): LatchkeyError {
  if (LatchkeyError.is(err)) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return new LatchkeyError('UNAVAILABLE', 'file store unavailable', {
    cause: err,
    detail: `${what}: ${code ?? (err instanceof Error ? err.name : typeof err)}`,
  });
}

/** fsyncs a directory, so that a file created or removed in it stays so after a crash. */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export class DirBlobStore implements BlobStore {
  readonly kind = 'directory';
  readonly dir: string;

  /**
   * Creates the directory (0700) when missing and tightens an existing one.
   * @throws LatchkeyError UNAVAILABLE when it cannot be created.
   */
  constructor(dir: string) {
    this.dir = dir;
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      chmodSync(dir, 0o700);
    } catch (err) {
      throw unavailable(err, 'open');
    }
  }

  #path(blob: string): string {
    // Ids are checked at the route; this keeps a path inside the directory whatever calls it.
    if (!BlobId.safeParse(blob).success) throw new LatchkeyError('NOT_FOUND', 'no such file');
    return join(this.dir, blob);
  }

  async openWriter(blob: string, offset: number): Promise<BlobWriter> {
    const path = this.#path(blob);
    let fh: FileHandle;
    let created = false;
    try {
      try {
        fh = await open(path, constants.O_RDWR);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || offset !== 0) throw err;
        fh = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o600);
        created = true;
      }
    } catch (err) {
      throw unavailable(err, 'open-writer');
    }
    const file = fh;
    let position = offset;
    try {
      // Bytes past the recorded offset were never acknowledged: the upload resumes over them.
      if ((await file.stat()).size !== offset) await file.truncate(offset);
    } catch (err) {
      await file.close().catch(() => undefined);
      throw unavailable(err, 'truncate');
    }
    const dir = this.dir;
    return {
      async write(chunk) {
        try {
          let done = 0;
          while (done < chunk.length) {
            const { bytesWritten } = await file.write(chunk, done, chunk.length - done, position);
            done += bytesWritten;
            position += bytesWritten;
          }
        } catch (err) {
          throw unavailable(err, 'write');
        }
      },
      async sync() {
        try {
          await file.sync();
          if (created) {
            await syncDir(dir);
            created = false;
          }
          return position;
        } catch (err) {
          throw unavailable(err, 'fsync');
        }
      },
      close: () => file.close().catch(() => undefined),
    };
  }

  async read(blob: string, start: number, end: number): Promise<Readable> {
    const path = this.#path(blob);
    let fh: FileHandle;
    try {
      fh = await open(path, constants.O_RDONLY);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new LatchkeyError('NOT_FOUND', 'no such file');
      throw unavailable(err, 'read');
    }
    try {
      if ((await fh.stat()).size < end) throw new LatchkeyError('NOT_FOUND', 'file incomplete');
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw unavailable(err, 'read');
    }
    if (end <= start) {
      await fh.close();
      return Readable.from([]);
    }
    return createReadStream(path, { fd: fh, start, end: end - 1, autoClose: true });
  }

  async delete(blobs: readonly string[]): Promise<void> {
    if (blobs.length === 0) return;
    try {
      for (const b of blobs) {
        await unlink(this.#path(b)).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
        });
      }
      await syncDir(this.dir);
    } catch (err) {
      throw unavailable(err, 'delete');
    }
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
