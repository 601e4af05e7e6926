/**
 * Opening the SQLite message store's file (store.ts) without ever harming it: checks that only
 * read come first (access, schema version, `PRAGMA quick_check` through a read-only connection),
 * so a file this code must not use is left exactly as it was (docs/guarantees.md "Operations");
 * then @latchkey/storage opens it with our pragmas and migrates it. Also the wording of a storage
 * failure: SQLite's own message (tables and columns, no values) goes to the detail, for logs.
 */
import { accessSync, constants as fsConstants, existsSync, statSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { LatchkeyError } from '@latchkey/protocol';
import { SchemaTooNewError, StoreError } from '@latchkey/storage';
import {
  isSqliteError,
  migrateSqlite,
  openSqlite,
  readSqliteVersion,
  type SqliteDatabase,
} from '@latchkey/storage/sqlite';
import { MIGRATIONS } from './sqlite-schema.ts';

export interface OpenMessageDbOptions {
  path: string;
  synchronous?: 'FULL' | 'NORMAL';
  integrityCheck?: 'quick' | 'off';
  onOpen?: (db: SqliteDatabase) => void;
}

/**
 * Opens (creating or migrating) the message store's file.
 * @throws StoreError NOT_ACCESSIBLE, CORRUPT, NEWER_SCHEMA (SchemaTooNewError); LatchkeyError
 *   UNAVAILABLE for any other failure.
 */
export function openMessageDb(opts: OpenMessageDbOptions): SqliteDatabase {
  checkAccess(opts.path);
  if (existsSync(opts.path)) probe(opts.path, opts.integrityCheck ?? 'quick');
  let db: SqliteDatabase | undefined;
  try {
    db = openSqlite(opts.path, { synchronous: opts.synchronous ?? 'NORMAL' });
    migrateSqlite(db, MIGRATIONS, `message store ${opts.path}`);
    opts.onOpen?.(db);
    return db;
  } catch (err) {
    db?.close();
    throw unavailable(err, 'open');
  }
}

/**
 * Wraps a storage failure. The detail (logs only) keeps SQLite's own message, which names
 * tables and columns but no values; any other error contributes its name only, since its
 * message might quote stored content (e.g. a JSON parse error).
 */
export function unavailable(err: unknown, what: string): LatchkeyError {
  if (LatchkeyError.is(err)) return err;
  if (
    isSqliteError(err) &&
    (err.code === 'SQLITE_FULL' || err.code.startsWith('SQLITE_READONLY'))
  ) {
    // Nothing of the failed transaction was stored; earlier commits stay. Retry once space returns.
    const full = err.code === 'SQLITE_FULL';
    return new StoreError(
      full ? 'FULL' : 'READ_ONLY',
      full ? 'message store full' : 'message store read-only',
      {
        cause: err,
        detail: `${what}: ${err.code}: ${err.message}`,
      },
    );
  }
  const detail = isSqliteError(err)
    ? `${err.code}: ${err.message}`
    : err instanceof Error
      ? err.name
      : typeof err;
  return new LatchkeyError('UNAVAILABLE', 'message store unavailable', {
    cause: err,
    detail: `${what}: ${detail}`,
  });
}

/**
 * The directory (and the files, when present) must be readable and writable by this process.
 * @throws StoreError NOT_ACCESSIBLE
 */
export function checkAccess(path: string): void {
  const dir = dirname(path);
  for (const [p, what] of [
    [dir, 'data directory'],
    [path, 'database file'],
    [`${path}-wal`, 'WAL file'],
    [`${path}-shm`, 'WAL index file'],
  ] as const) {
    if (p !== dir && !existsSync(p)) continue;
    try {
      accessSync(p, fsConstants.R_OK | fsConstants.W_OK | (p === dir ? fsConstants.X_OK : 0));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'EACCES';
      const why =
        code === 'ENOENT'
          ? 'does not exist'
          : `is not readable and writable by this process (${code})`;
      throw new StoreError(
        'NOT_ACCESSIBLE',
        `message store: ${what} ${p} ${why}; nothing was changed`,
        {
          cause: err,
          detail: `open: ${code}`,
        },
      );
    }
  }
}

/**
 * Reads an existing file through a read-only connection: its schema version must be one this
 * code knows, and (unless off) `PRAGMA quick_check` must pass. Nothing is written.
 * @throws StoreError NEWER_SCHEMA, CORRUPT, NOT_ACCESSIBLE
 */
export function probe(path: string, integrity: 'quick' | 'off'): void {
  // A read-only connection to a WAL file still creates empty -wal/-shm files; a refused file
  // gets them removed again, so that it is left as it was found.
  const created = [`${path}-wal`, `${path}-shm`].filter((f) => !existsSync(f));
  let db: SqliteDatabase | undefined;
  try {
    db = openSqlite(path, { readonly: true });
    SchemaTooNewError.check(`message store ${path}`, readSqliteVersion(db), MIGRATIONS.length);
    if (integrity === 'quick') {
      const rows = db.pragma('quick_check') as { quick_check: string }[];
      if (rows.length !== 1 || rows[0]?.quick_check !== 'ok') {
        throw new StoreError(
          'CORRUPT',
          `message store ${path} failed its integrity check; restore a backup`,
          {
            detail: `open: quick_check: ${rows
              .slice(0, 3)
              .map((r) => r.quick_check)
              .join('; ')}`,
          },
        );
      }
    }
    db.close();
  } catch (err) {
    db?.close();
    for (const f of created) {
      try {
        if (!f.endsWith('-wal') || statSync(f).size === 0) unlinkSync(f);
      } catch {
        // not created after all
      }
    }
    if (err instanceof StoreError) throw err;
    const code = isSqliteError(err) ? err.code : 'ERROR';
    if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') {
      throw new StoreError(
        'CORRUPT',
        `message store ${path} is not a readable database (${code}); restore a backup`,
        {
          cause: err,
          detail: `open: ${code}`,
        },
      );
    }
    throw new StoreError(
      'NOT_ACCESSIBLE',
      `message store ${path} cannot be opened (${code}); nothing was changed`,
      {
        cause: err,
        detail: `open: ${code}`,
      },
    );
  }
}
