/**
 * The contract of a blob store: where the relay keeps the ciphertext of uploaded files (the
 * metadata lives in the message store's database, meta.ts). Two backends: a directory of files
 * (dir-blob-store.ts, the default next to a SQLite store) and a table of parts on PostgreSQL
 * (pg-blob-store.ts). A blob is written front to back by one writer at a time, from an offset
 * the metadata says is durable; whatever lies past that offset (a write the process did not get
 * to record) is discarded when the next writer opens it.
 */
import type { Readable } from 'node:stream';

/** One upload request's writes into a blob, from the offset it was opened at. */
export interface BlobWriter {
  /** Appends `chunk` (the caller awaits each, which is the request's back-pressure). */
  write(chunk: Buffer): Promise<void>;
  /**
   * Makes everything written so far durable (data and, for a new blob, its name) and returns
   * the blob's length. Called once per request, before its offset is recorded.
   */
  sync(): Promise<number>;
  /** Releases the writer (after `sync`, or to give up). Never throws. */
  close(): Promise<void>;
}

export interface BlobStore {
  /** `directory` or `postgres`: for logs and the startup line. */
  readonly kind: 'directory' | 'postgres';
  /**
   * Opens a blob for writing at `offset`, discarding anything stored past it; creates it when
   * missing (then `offset` is 0).
   * @throws LatchkeyError UNAVAILABLE when the store cannot be written.
   */
  openWriter(blob: string, offset: number): Promise<BlobWriter>;
  /**
   * Streams bytes `start` (inclusive) to `end` (exclusive) of a blob.
   * @throws LatchkeyError NOT_FOUND when the blob holds fewer bytes, UNAVAILABLE on a failure.
   */
  read(blob: string, start: number, end: number): Promise<Readable>;
  /** Deletes blobs (missing ones are skipped) durably. @throws LatchkeyError UNAVAILABLE */
  delete(blobs: readonly string[]): Promise<void>;
  /** Releases what the store holds open (the PostgreSQL pool belongs to the message store). */
  close(): Promise<void>;
}
