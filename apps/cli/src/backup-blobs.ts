/**
 * The relay's file blobs in `latchkey backup` / `restore` (backup.ts): the encrypted files live
 * next to the message database, one file per blob in `relay/messages.db.files/`, their
 * metadata in its `blobs` table. A message backup carries every complete blob its database
 * snapshot lists, and its manifest lists them (blob id, contact, size, SHA-256 of the stored
 * ciphertext). Rows of blobs not carried (unfinished uploads, a blob shredded between the
 * snapshot and the copy) are dropped from the snapshot, so a restored relay never lists a blob
 * it does not hold. Restore checks every listed blob against its file and the database's rows
 * before writing anything.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LatchkeyError } from '@latchkey/protocol';
import { openSqlite } from '@latchkey/storage/sqlite';

/** The blob directory of the message store, relative to the data directory. */
export const BLOBS_DIR = 'relay/messages.db.files';

export interface ManifestBlob {
  blob: string;
  contactId: string;
  /** Bytes of the stored ciphertext. */
  size: number;
  /** SHA-256 (hex) of the stored ciphertext. */
  sha256: string;
}

const BLOB_ID = /^[A-Za-z0-9_-]{22}$/;

async function hashFile(path: string): Promise<{ bytes: number; sha256: string }> {
  const h = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    h.update(chunk);
    bytes += chunk.length;
  }
  return { bytes, sha256: h.digest('hex') };
}

interface BlobRow {
  blob_id: string;
  contact_id: string;
  size: number;
}

/** Complete blobs a database lists (none when it predates files). */
function listedBlobs(dbPath: string): BlobRow[] {
  const db = openSqlite(dbPath, { readonly: true });
  try {
    const has = db
      .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'blobs'")
      .get();
    if (!has) return [];
    return db
      .prepare<[], BlobRow>(
        'SELECT blob_id, contact_id, size FROM blobs WHERE complete = 1 ORDER BY blob_id',
      )
      .all();
  } finally {
    db.close();
  }
}

/**
 * Copies the complete blobs the snapshot `snapshotDb` lists from `<fromData>/BLOBS_DIR` into
 * `<toRoot>/BLOBS_DIR` (0600 files, 0700 directory), then drops from the snapshot the rows of
 * every blob not copied. Returns the manifest entries, and how many complete blobs had no file
 * (shredded meanwhile, or kept elsewhere by a relay started with `--files-dir`).
 */
export async function backupBlobs(
  snapshotDb: string,
  fromData: string,
  toRoot: string,
): Promise<{ blobs: ManifestBlob[]; missing: number }> {
  const rows = listedBlobs(snapshotDb);
  const out: ManifestBlob[] = [];
  let missing = 0;
  const dest = join(toRoot, BLOBS_DIR);
  for (const r of rows) {
    if (!BLOB_ID.test(r.blob_id)) continue;
    const src = join(fromData, BLOBS_DIR, r.blob_id);
    // Shredded since the snapshot, or damaged: left out (its row is dropped below).
    if (!existsSync(src) || (await stat(src)).size !== Number(r.size)) {
      missing++;
      continue;
    }
    await mkdir(dest, { recursive: true, mode: 0o700 });
    const to = join(dest, r.blob_id);
    await copyFile(src, to);
    await chmod(to, 0o600);
    const h = await hashFile(to);
    if (h.bytes !== Number(r.size)) {
      await rm(to, { force: true });
      continue;
    }
    out.push({ blob: r.blob_id, contactId: r.contact_id, size: h.bytes, sha256: h.sha256 });
  }
  const kept = new Set(out.map((b) => b.blob));
  const db = openSqlite(snapshotDb, { synchronous: 'FULL' });
  try {
    const has = db
      .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'blobs'")
      .get();
    if (has) {
      const all = db.prepare<[], { blob_id: string }>('SELECT blob_id FROM blobs').all();
      const drop = db.prepare('DELETE FROM blobs WHERE blob_id = ?');
      db.transaction(() => {
        for (const r of all) if (!kept.has(r.blob_id)) drop.run(r.blob_id);
      })();
    }
    db.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    db.close();
  }
  await rm(`${snapshotDb}-wal`, { force: true });
  await rm(`${snapshotDb}-shm`, { force: true });
  return { blobs: out, missing };
}

/**
 * Checks a backup's blob list: well-formed, every file present with its size and SHA-256, and
 * the same set (ids, contacts, sizes) as the complete blobs its database lists.
 * @throws LatchkeyError BAD_REQUEST naming what does not match.
 */
export async function verifyBlobs(from: string, listed: unknown): Promise<ManifestBlob[]> {
  const bad = (what: string): LatchkeyError => new LatchkeyError('BAD_REQUEST', what);
  if (listed !== undefined && !Array.isArray(listed))
    throw bad('backup manifest: blobs is not a list');
  const blobs = (listed ?? []) as unknown[];
  const out: ManifestBlob[] = [];
  for (const b of blobs) {
    const e = b as Partial<ManifestBlob> | null;
    if (
      typeof e?.blob !== 'string' ||
      !BLOB_ID.test(e.blob) ||
      typeof e.contactId !== 'string' ||
      !Number.isSafeInteger(e.size) ||
      typeof e.sha256 !== 'string' ||
      !/^[0-9a-f]{64}$/.test(e.sha256)
    )
      throw bad('backup manifest lists a malformed blob');
    let actual: { bytes: number; sha256: string };
    try {
      actual = await hashFile(join(from, BLOBS_DIR, e.blob));
    } catch {
      throw bad(`backup blob ${e.blob} is missing`);
    }
    if (actual.bytes !== e.size || actual.sha256 !== e.sha256)
      throw bad(`backup blob ${e.blob} does not match the manifest (size or SHA-256)`);
    out.push(e as ManifestBlob);
  }
  const rows = listedBlobs(join(from, 'relay/messages.db'));
  const key = (id: string, c: string, n: number): string => `${id}\n${c}\n${n}`;
  const inDb = new Set(rows.map((r) => key(r.blob_id, r.contact_id, Number(r.size))));
  const inManifest = new Set(out.map((b) => key(b.blob, b.contactId, b.size)));
  if (inDb.size !== inManifest.size || [...inDb].some((k) => !inManifest.has(k)))
    throw bad("backup blobs do not match the database's list of files");
  return out;
}

/** Replaces `<to>/BLOBS_DIR` by the backup's blobs (each copied then renamed into place). */
export async function restoreBlobs(from: string, to: string, blobs: ManifestBlob[]): Promise<void> {
  const dest = join(to, BLOBS_DIR);
  // Blobs of the database being replaced belong to it alone.
  await rm(dest, { recursive: true, force: true });
  await mkdir(dest, { recursive: true, mode: 0o700 });
  await chmod(dest, 0o700);
  for (const b of blobs) {
    const target = join(dest, b.blob);
    await copyFile(join(from, BLOBS_DIR, b.blob), `${target}.tmp`);
    await chmod(`${target}.tmp`, 0o600);
    await rename(`${target}.tmp`, target);
  }
}
