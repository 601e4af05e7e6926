/**
 * `latchkey backup` and `latchkey restore` (docs/guarantees.md "Operations").
 *
 * Messages and keys are separate artefacts (issue 13): a message backup (`--out`) holds the
 * relay's database only, never a key, wrapped or not, nor a secret, so it can be kept, copied
 * and restored without ever being able to undo a shred; a key backup (`--keys-out`, another
 * directory) holds the key service's databases and its wrapped signing key, plus the secrets
 * (API secret, access-log key, master key) only with `--include-secrets`. A key backup taken
 * before a shred opens the shredded contact with the KEK generation of its time until the shred
 * is completed (`latchkey shred --complete`, docs/key-management.md "Completing a shred").
 *
 * Backup is online: each SQLite database (relay/messages.db, keys/keys.db, keys/access.db) is
 * copied with SQLite's online backup API (better-sqlite3 `db.backup()`) through a read-only
 * connection, so a running `latchkey start` keeps serving and every copy is one consistent
 * snapshot of its database. The databases are snapshotted one after another (messages first,
 * then keys): a key created after the messages snapshot is harmless, and every message in the
 * snapshot has its key in the later keys snapshot. A `manifest.json` in each artefact lists its
 * files with size and SHA-256; restore verifies it before writing anything. The message backup
 * also carries the relay's encrypted file blobs, listed under `blobs` (backup-blobs.ts).
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import {
  chmod,
  copyFile,
  mkdir,
  readFile,
  readdir,
  rename,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { LatchkeyError } from '@latchkey/protocol';
import { openSqlite } from '@latchkey/storage/sqlite';
import {
  BLOBS_DIR,
  backupBlobs,
  restoreBlobs,
  verifyBlobs,
  type ManifestBlob,
} from './backup-blobs.ts';
import { dataDir } from './config.ts';
import { EXIT, UsageError } from './usage.ts';

type Out = (line: string) => void;

/** Files of a data directory, relative paths with `/`. The message backup: this alone. */
const MESSAGES_DB = 'relay/messages.db';
/** The key backup's databases. */
const KEY_DATABASES = ['keys/keys.db', 'keys/access.db'] as const;
/** Wrapped by the master key: needed for stored certificates to verify. Key backup only. */
const PLAIN_FILES = ['keys/service-signing.key'] as const;
/** Usable as they are: copied only with --include-secrets, into the key backup. */
const SECRET_FILES = ['api-secret', 'master.key', 'keys/access-log.key'] as const;

export const MANIFEST = 'manifest.json';
const FORMAT = 'latchkey.v1.backup';

/** What an artefact holds; `full` is a backup made before messages and keys were split. */
export type BackupContents = 'messages' | 'keys' | 'full';

const ALLOWED: Record<BackupContents, ReadonlySet<string>> = {
  messages: new Set([MESSAGES_DB]),
  keys: new Set([...KEY_DATABASES, ...PLAIN_FILES, ...SECRET_FILES]),
  full: new Set([MESSAGES_DB, ...KEY_DATABASES, ...PLAIN_FILES, ...SECRET_FILES]),
};

export interface ManifestFile {
  path: string;
  kind: 'sqlite' | 'file' | 'secret';
  bytes: number;
  sha256: string;
}

export interface Manifest {
  format: typeof FORMAT;
  /** Absent in backups made before the split: `full`. */
  contents?: BackupContents;
  createdAt: string;
  includesSecrets: boolean;
  files: ManifestFile[];
  /** A message backup's file blobs (absent in backups made before files). */
  blobs?: ManifestBlob[];
}

async function sha256(path: string): Promise<{ bytes: number; sha256: string }> {
  const data = await readFile(path);
  return { bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') };
}

async function isEmptyDir(path: string): Promise<boolean> {
  try {
    return (await readdir(path)).length === 0;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw err;
  }
}

function storageError(err: unknown, what: string): LatchkeyError {
  if (LatchkeyError.is(err)) return err;
  const code = (err as { code?: unknown } | null)?.code;
  return new LatchkeyError(
    'UNAVAILABLE',
    `${what}${typeof code === 'string' ? ` (${code})` : ''}`,
    { cause: err },
  );
}

export interface BackupFlags {
  data?: string | undefined;
  out?: string | undefined;
  'keys-out'?: string | undefined;
  'include-secrets'?: boolean | undefined;
}

/** Whether one path is the other or lies inside it. */
function overlaps(a: string, b: string): boolean {
  const inside = (x: string, y: string): boolean =>
    x === y || x.startsWith(y.endsWith(sep) ? y : `${y}${sep}`);
  return inside(a, b) || inside(b, a);
}

/** Copies `rel` of `from` into `to` with SQLite's online backup API; returns its manifest entry. */
async function snapshot(from: string, to: string, rel: string): Promise<ManifestFile> {
  const dest = join(to, rel);
  await mkdir(dirname(dest), { recursive: true, mode: 0o700 });
  const db = openSqlite(join(from, rel), { readonly: true });
  try {
    // After a first step, copy the rest in one step: a write by the running relay between
    // steps restarts the copy, so few steps finish even under a steady stream of sends.
    await db.backup(`${dest}.tmp`, { progress: () => 1_000_000 });
  } finally {
    db.close();
  }
  await chmod(`${dest}.tmp`, 0o600);
  await rename(`${dest}.tmp`, dest);
  return { path: rel, kind: 'sqlite', ...(await sha256(dest)) };
}

async function copyPlain(
  from: string,
  to: string,
  rel: string,
  kind: 'file' | 'secret',
): Promise<ManifestFile> {
  const dest = join(to, rel);
  await mkdir(dirname(dest), { recursive: true, mode: 0o700 });
  await copyFile(join(from, rel), dest);
  await chmod(dest, 0o600);
  return { path: rel, kind, ...(await sha256(dest)) };
}

async function writeManifest(
  to: string,
  contents: BackupContents,
  includesSecrets: boolean,
  files: ManifestFile[],
  blobs?: ManifestBlob[],
): Promise<void> {
  const manifest: Manifest = {
    format: FORMAT,
    contents,
    createdAt: new Date().toISOString(),
    includesSecrets,
    files,
    ...(blobs === undefined ? {} : { blobs }),
  };
  await writeFile(join(to, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o600 });
}

/**
 * `latchkey backup --data DIR --out DIR2 [--keys-out DIR3 [--include-secrets]]`: the message
 * backup into DIR2 (relay/messages.db only) and, with --keys-out, the key backup into DIR3.
 * Prints one line per file (`PATH BYTES sha256=HEX`), then `keys-backup: DIR3` (with
 * --keys-out), then `backup: DIR2`.
 * @throws UsageError without --out, with --include-secrets but no --keys-out, or with DIR3
 *   overlapping DIR2; LatchkeyError CONFLICT when DIR2 or DIR3 is not empty, NOT_FOUND when DIR
 *   holds no message store, UNAVAILABLE when a file cannot be read or written.
 */
export async function backup(flags: BackupFlags, out: Out): Promise<number> {
  if (!flags.out) throw new UsageError('backup needs --out DIR');
  if (flags['include-secrets'] && !flags['keys-out']) {
    throw new UsageError(
      '--include-secrets needs --keys-out DIR3: secrets go with the key backup, never with the messages',
    );
  }
  const from = dataDir(flags.data);
  const to = resolve(flags.out);
  const keysTo = flags['keys-out'] ? resolve(flags['keys-out']) : undefined;
  if (keysTo !== undefined && overlaps(to, keysTo))
    throw new UsageError('--keys-out must be a directory apart from --out');
  if (!existsSync(join(from, MESSAGES_DB))) {
    throw new LatchkeyError('NOT_FOUND', `no message store in ${from} (expected ${MESSAGES_DB})`);
  }
  for (const dir of [to, keysTo]) {
    if (dir !== undefined && !(await isEmptyDir(dir)))
      throw new LatchkeyError('CONFLICT', `${dir} is not empty`);
  }
  const files: ManifestFile[] = [];
  const keyFiles: ManifestFile[] = [];
  let blobs: ManifestBlob[];
  let missing: number;
  try {
    await mkdir(to, { recursive: true, mode: 0o700 });
    const db = await snapshot(from, to, MESSAGES_DB);
    // The blobs the snapshot lists; rows of those not carried leave the snapshot, so hash after.
    const carried = await backupBlobs(join(to, MESSAGES_DB), from, to);
    blobs = carried.blobs;
    missing = carried.missing;
    files.push({ ...db, ...(await sha256(join(to, MESSAGES_DB))) });
    await writeManifest(to, 'messages', false, files, blobs);
  } catch (err) {
    throw storageError(err, `backup to ${to} failed`);
  }
  if (keysTo !== undefined) {
    const secrets = flags['include-secrets'] === true;
    try {
      await mkdir(keysTo, { recursive: true, mode: 0o700 });
      for (const rel of KEY_DATABASES)
        if (existsSync(join(from, rel))) keyFiles.push(await snapshot(from, keysTo, rel));
      const extra = [
        ...PLAIN_FILES.map((p) => [p, 'file'] as const),
        ...(secrets ? SECRET_FILES.map((p) => [p, 'secret'] as const) : []),
      ];
      for (const [rel, kind] of extra)
        if (existsSync(join(from, rel))) keyFiles.push(await copyPlain(from, keysTo, rel, kind));
      await writeManifest(keysTo, 'keys', secrets, keyFiles);
    } catch (err) {
      throw storageError(err, `backup to ${keysTo} failed`);
    }
  }
  for (const f of [...files, ...keyFiles]) out(`${f.path} ${f.bytes} sha256=${f.sha256}`);
  for (const b of blobs) out(`${BLOBS_DIR}/${b.blob} ${b.size} sha256=${b.sha256}`);
  if (missing > 0)
    out(
      `warning: ${missing} file blob(s) the database lists are not in ${join(from, BLOBS_DIR)} (shredded meanwhile, or the relay keeps them elsewhere with --files-dir): left out`,
    );
  if (keysTo !== undefined) out(`keys-backup: ${keysTo}`);
  out(`backup: ${to}`);
  return EXIT.ok;
}

export interface RestoreFlags {
  from?: string | undefined;
  data?: string | undefined;
  force?: boolean | undefined;
}

/** Reads and checks a backup's manifest against the files next to it. */
async function verifiedManifest(from: string): Promise<Manifest> {
  let manifest: Manifest;
  try {
    manifest = JSON.parse(await readFile(join(from, MANIFEST), 'utf8')) as Manifest;
  } catch {
    throw new LatchkeyError('BAD_REQUEST', `${from} has no readable ${MANIFEST}`);
  }
  if (manifest.format !== FORMAT || !Array.isArray(manifest.files)) {
    throw new LatchkeyError(
      'BAD_REQUEST',
      `${join(from, MANIFEST)} is not a latchkey backup manifest`,
    );
  }
  const contents = manifest.contents ?? 'full';
  const known = ALLOWED[contents] as ReadonlySet<string> | undefined;
  if (known === undefined)
    throw new LatchkeyError('BAD_REQUEST', `backup holds unknown contents: ${String(contents)}`);
  if (contents !== 'keys' && !manifest.files.some((f) => f.path === MESSAGES_DB)) {
    throw new LatchkeyError('BAD_REQUEST', `backup has no ${MESSAGES_DB}`);
  }
  if (manifest.files.length === 0) throw new LatchkeyError('BAD_REQUEST', 'backup lists no file');
  for (const f of manifest.files) {
    if (!known.has(f.path))
      throw new LatchkeyError('BAD_REQUEST', `backup lists an unknown file: ${String(f.path)}`);
    let actual: { bytes: number; sha256: string };
    try {
      actual = await sha256(join(from, f.path));
    } catch {
      throw new LatchkeyError('BAD_REQUEST', `backup file ${f.path} is missing`);
    }
    if (actual.bytes !== f.bytes || actual.sha256 !== f.sha256) {
      throw new LatchkeyError(
        'BAD_REQUEST',
        `backup file ${f.path} does not match the manifest (size or SHA-256)`,
      );
    }
  }
  if (contents !== 'keys') manifest.blobs = await verifyBlobs(from, manifest.blobs);
  else if (manifest.blobs !== undefined)
    throw new LatchkeyError('BAD_REQUEST', 'a key backup lists no blobs');
  return manifest;
}

/**
 * `latchkey restore --from DIR2 --data DIR [--force]`: verifies the manifest, then copies every
 * file into DIR. A message backup and a key backup are restored one after the other into the
 * same DIR. Prints one line per file, then `restored: DIR`.
 * @throws UsageError without --from; LatchkeyError BAD_REQUEST when the backup does not match
 *   its manifest, CONFLICT when DIR already holds a file of the backup (a full backup: when DIR
 *   is not empty) and --force is absent, UNAVAILABLE on I/O.
 */
export async function restore(flags: RestoreFlags, out: Out): Promise<number> {
  if (!flags.from) throw new UsageError('restore needs --from DIR');
  const from = resolve(flags.from);
  const to = dataDir(flags.data);
  const manifest = await verifiedManifest(from);
  const taken =
    (manifest.contents ?? 'full') === 'full'
      ? !(await isEmptyDir(to))
      : manifest.files.some((f) => existsSync(join(to, f.path)));
  if (!flags.force && taken) {
    throw new LatchkeyError(
      'CONFLICT',
      `${to} is not empty (stop latchkey start there, then pass --force to overwrite)`,
    );
  }
  try {
    await mkdir(to, { recursive: true, mode: 0o700 });
    // Blobs before the database that lists them.
    if (manifest.files.some((f) => f.path === MESSAGES_DB)) {
      await mkdir(join(to, 'relay'), { recursive: true, mode: 0o700 });
      await restoreBlobs(from, to, manifest.blobs ?? []);
      for (const b of manifest.blobs ?? [])
        out(`${BLOBS_DIR}/${b.blob} ${b.size} sha256=${b.sha256}`);
    }
    for (const f of manifest.files) {
      const dest = join(to, f.path);
      await mkdir(dirname(dest), { recursive: true, mode: 0o700 });
      await copyFile(join(from, f.path), `${dest}.tmp`);
      await chmod(`${dest}.tmp`, 0o600);
      if (f.kind === 'sqlite') {
        const check = openSqlite(`${dest}.tmp`, { readonly: true });
        const ok = (check.pragma('quick_check', { simple: true }) as string) === 'ok';
        check.close();
        if (!ok)
          throw new LatchkeyError('BAD_REQUEST', `backup file ${f.path} fails its integrity check`);
        // A WAL left by the database being replaced would be replayed onto the restored copy.
        await rm(`${dest}-wal`, { force: true });
        await rm(`${dest}-shm`, { force: true });
      }
      await rename(`${dest}.tmp`, dest);
      const s = await stat(dest);
      out(`${f.path} ${s.size} sha256=${f.sha256}`);
    }
    // Endpoints of a process that ran on the old data are no longer true.
    await rm(join(to, 'endpoints.json'), { force: true });
  } catch (err) {
    throw storageError(err, `restore into ${to} failed`);
  }
  out(`restored: ${to}`);
  return EXIT.ok;
}
