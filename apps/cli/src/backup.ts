/**
 * `latchkey backup` and `latchkey restore` (docs/guarantees.md "Operations").
 *
 * Backup is online: each SQLite database (relay/messages.db, keys/keys.db, keys/access.db) is
 * copied with SQLite's online backup API (better-sqlite3 `db.backup()`) through a read-only
 * connection, so a running `latchkey start` keeps serving and every copy is one consistent
 * snapshot of its database. The databases are snapshotted one after another (messages first,
 * then keys): a key created after the messages snapshot is harmless, and every message in the
 * snapshot has its key in the later keys snapshot. Secrets (API secret, master key, access-log
 * key) are copied only with `--include-secrets`. A `manifest.json` lists every file with its
 * size and SHA-256; restore verifies it before writing anything.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { LatchkeyError } from '@latchkey/protocol';
import { dataDir } from './config.ts';
import { EXIT, UsageError } from './usage.ts';

type Out = (line: string) => void;

/** Files of a data directory, relative paths with `/`. */
const DATABASES = ['relay/messages.db', 'keys/keys.db', 'keys/access.db'] as const;
/** Wrapped by the master key: safe to copy without it, needed for stored certificates to verify. */
const PLAIN_FILES = ['keys/service-signing.key'] as const;
/** Usable as they are: copied only with --include-secrets. */
const SECRET_FILES = ['api-secret', 'master.key', 'keys/access-log.key'] as const;

export const MANIFEST = 'manifest.json';
const FORMAT = 'latchkey.v1.backup';

export interface ManifestFile {
  path: string;
  kind: 'sqlite' | 'file' | 'secret';
  bytes: number;
  sha256: string;
}

export interface Manifest {
  format: typeof FORMAT;
  createdAt: string;
  includesSecrets: boolean;
  files: ManifestFile[];
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
  return new LatchkeyError('UNAVAILABLE', `${what}${typeof code === 'string' ? ` (${code})` : ''}`, { cause: err });
}

export interface BackupFlags {
  data?: string | undefined;
  out?: string | undefined;
  'include-secrets'?: boolean | undefined;
}

/**
 * `latchkey backup --data DIR --out DIR2 [--include-secrets]`: prints one line per file
 * (`PATH BYTES sha256=HEX`), then `backup: DIR2`.
 * @throws UsageError without --out; LatchkeyError CONFLICT when DIR2 is not empty, NOT_FOUND
 *   when DIR holds no message store, UNAVAILABLE when a file cannot be read or written.
 */
export async function backup(flags: BackupFlags, out: Out): Promise<number> {
  if (!flags.out) throw new UsageError('backup needs --out DIR');
  const from = dataDir(flags.data);
  const to = resolve(flags.out);
  if (!existsSync(join(from, DATABASES[0]))) {
    throw new LatchkeyError('NOT_FOUND', `no message store in ${from} (expected ${DATABASES[0]})`);
  }
  if (!(await isEmptyDir(to))) throw new LatchkeyError('CONFLICT', `${to} is not empty`);
  const files: ManifestFile[] = [];
  try {
    await mkdir(to, { recursive: true, mode: 0o700 });
    for (const rel of DATABASES) {
      const src = join(from, rel);
      if (!existsSync(src)) continue;
      const dest = join(to, rel);
      await mkdir(dirname(dest), { recursive: true, mode: 0o700 });
      const db = new Database(src, { readonly: true, fileMustExist: true });
      try {
        // After a first step, copy the rest in one step: a write by the running relay between
        // steps restarts the copy, so few steps finish even under a steady stream of sends.
        await db.backup(`${dest}.tmp`, { progress: () => 1_000_000 });
      } finally {
        db.close();
      }
      await chmod(`${dest}.tmp`, 0o600);
      await rename(`${dest}.tmp`, dest);
      files.push({ path: rel, kind: 'sqlite', ...(await sha256(dest)) });
    }
    const extra = [
      ...PLAIN_FILES.map((p) => [p, 'file'] as const),
      ...(flags['include-secrets'] ? SECRET_FILES.map((p) => [p, 'secret'] as const) : []),
    ];
    for (const [rel, kind] of extra) {
      const src = join(from, rel);
      if (!existsSync(src)) continue;
      const dest = join(to, rel);
      await mkdir(dirname(dest), { recursive: true, mode: 0o700 });
      await copyFile(src, dest);
      await chmod(dest, 0o600);
      files.push({ path: rel, kind, ...(await sha256(dest)) });
    }
    const manifest: Manifest = {
      format: FORMAT,
      createdAt: new Date().toISOString(),
      includesSecrets: flags['include-secrets'] === true,
      files,
    };
    await writeFile(join(to, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o600 });
  } catch (err) {
    throw storageError(err, `backup to ${to} failed`);
  }
  for (const f of files) out(`${f.path} ${f.bytes} sha256=${f.sha256}`);
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
    throw new LatchkeyError('BAD_REQUEST', `${join(from, MANIFEST)} is not a latchkey backup manifest`);
  }
  const known = new Set<string>([...DATABASES, ...PLAIN_FILES, ...SECRET_FILES]);
  if (!manifest.files.some((f) => f.path === DATABASES[0])) {
    throw new LatchkeyError('BAD_REQUEST', `backup has no ${DATABASES[0]}`);
  }
  for (const f of manifest.files) {
    if (!known.has(f.path)) throw new LatchkeyError('BAD_REQUEST', `backup lists an unknown file: ${String(f.path)}`);
    let actual: { bytes: number; sha256: string };
    try {
      actual = await sha256(join(from, f.path));
    } catch {
      throw new LatchkeyError('BAD_REQUEST', `backup file ${f.path} is missing`);
    }
    if (actual.bytes !== f.bytes || actual.sha256 !== f.sha256) {
      throw new LatchkeyError('BAD_REQUEST', `backup file ${f.path} does not match the manifest (size or SHA-256)`);
    }
  }
  return manifest;
}

/**
 * `latchkey restore --from DIR2 --data DIR [--force]`: verifies the manifest, then copies every
 * file into DIR. Prints one line per file, then `restored: DIR`.
 * @throws UsageError without --from; LatchkeyError BAD_REQUEST when the backup does not match
 *   its manifest, CONFLICT when DIR is not empty and --force is absent, UNAVAILABLE on I/O.
 */
export async function restore(flags: RestoreFlags, out: Out): Promise<number> {
  if (!flags.from) throw new UsageError('restore needs --from DIR');
  const from = resolve(flags.from);
  const to = dataDir(flags.data);
  const manifest = await verifiedManifest(from);
  if (!flags.force && !(await isEmptyDir(to))) {
    throw new LatchkeyError('CONFLICT', `${to} is not empty (stop latchkey start there, then pass --force to overwrite)`);
  }
  try {
    await mkdir(to, { recursive: true, mode: 0o700 });
    for (const f of manifest.files) {
      const dest = join(to, f.path);
      await mkdir(dirname(dest), { recursive: true, mode: 0o700 });
      await copyFile(join(from, f.path), `${dest}.tmp`);
      await chmod(`${dest}.tmp`, 0o600);
      if (f.kind === 'sqlite') {
        const check = new Database(`${dest}.tmp`, { readonly: true, fileMustExist: true });
        const ok = (check.pragma('quick_check', { simple: true }) as string) === 'ok';
        check.close();
        if (!ok) throw new LatchkeyError('BAD_REQUEST', `backup file ${f.path} fails its integrity check`);
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
