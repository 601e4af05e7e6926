/**
 * SQLite, the way every Latchkey store opens and migrates it (better-sqlite3): WAL, a chosen
 * `synchronous` level, foreign keys, a busy timeout so that processes sharing a file wait for
 * each other's write lock, and optionally `secure_delete` (deleted content zeroed, for stores
 * that shred) and a private file (0600 in a 0700 directory, before SQLite creates it, so the
 * -wal and -shm files inherit the mode). Schema versions live in `PRAGMA user_version`, or, for
 * a store sharing a file with others, in a row of a version table of its own.
 */
import Database from 'better-sqlite3';
import { SchemaTooNewError, type StoreErrorCode } from './errors.ts';
import { runSync, type Flow } from './flow.ts';
import { preparePrivateFile } from './private-file.ts';
import type { Sql, SqlValue } from './sql.ts';

export { preparePrivateFile } from './private-file.ts';

export type SqliteDatabase = Database.Database;

export interface OpenSqliteOptions {
  /**
   * `NORMAL` (default): a commit survives a process crash, the last ones before a power loss may
   * be lost. `FULL`: an fsync per commit, so it also survives a power loss.
   */
  synchronous?: 'NORMAL' | 'FULL';
  /** `PRAGMA foreign_keys` (default true). */
  foreignKeys?: boolean;
  /** `PRAGMA secure_delete`: deleted content is zeroed, not left in free pages (default false). */
  secureDelete?: boolean;
  /** Create the file 0600 (its directory 0700 when created here), tightening a looser file. */
  private?: boolean;
  /** How long a write waits for another connection's lock (ms, default 5000). */
  busyTimeoutMs?: number;
  /** Refuse to create the file (default false). */
  fileMustExist?: boolean;
  /**
   * A read-only connection to an existing file: nothing is written, no pragma but the busy
   * timeout is set (for checks before a store decides to open a file at all).
   */
  readonly?: boolean;
}

/** True for paths that name no file on disk (`:memory:`, `file:` URIs). */
function inMemory(path: string): boolean {
  return path === ':memory:' || path === '' || path.startsWith('file:');
}

/**
 * Opens (creating) the SQLite file at `path` with our pragmas. Nothing is migrated here.
 * @throws the driver's or the file system's error as is (each store words its own failure).
 */
export function openSqlite(path: string, opts: OpenSqliteOptions = {}): SqliteDatabase {
  const busy = opts.busyTimeoutMs ?? 5000;
  if (!Number.isSafeInteger(busy) || busy < 0) throw new RangeError('busyTimeoutMs');
  const readonly = opts.readonly === true;
  if (opts.private === true && !readonly && !inMemory(path)) preparePrivateFile(path);
  const db = new Database(path, {
    readonly,
    fileMustExist: readonly || opts.fileMustExist === true,
  });
  try {
    // First, so that the pragmas below wait for another process's lock too.
    db.pragma(`busy_timeout = ${busy}`);
    if (readonly) return db;
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${opts.synchronous === 'FULL' ? 'FULL' : 'NORMAL'}`);
    db.pragma(`foreign_keys = ${opts.foreignKeys === false ? 'OFF' : 'ON'}`);
    if (opts.secureDelete === true) db.pragma('secure_delete = ON');
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/**
 * One schema step: SQL to run, or a function for what SQL alone cannot do. A function may return
 * the version it reached: more than one step further (it created the latest schema at once), or
 * the version it started from when the rest of the step cannot be done synchronously (migration
 * stops there; the store finishes it and sets the version itself).
 */
export type SqliteStep = string | ((db: SqliteDatabase) => number | void);

export interface MigrateSqliteOptions {
  /** Wire code of the SchemaTooNewError (default `UNAVAILABLE`). */
  code?: StoreErrorCode;
  /**
   * Keep the version in row `name` of table `table` (created when missing) instead of
   * `PRAGMA user_version`: for a store that shares a file with another one.
   */
  versionRow?: { table: string; name: string };
}

/**
 * Brings the schema up to `steps.length`: step `i` migrates version `i` to `i + 1`. Each step runs
 * in its own IMMEDIATE transaction that re-reads the version first, so processes opening one file
 * together migrate it once.
 * @returns the version found and the version now (less than `steps.length` only when a step
 *   stopped, see SqliteStep).
 * @throws SchemaTooNewError when the file's version is newer than `steps.length` (nothing is
 *   changed); a failing step's error as is (that step is rolled back).
 */
export function migrateSqlite(
  db: SqliteDatabase,
  steps: readonly SqliteStep[],
  what: string,
  opts: MigrateSqliteOptions = {},
): { from: number; to: number } {
  const version = sqliteVersion(db, opts.versionRow);
  const known = steps.length;
  const check = (v: number): number => SchemaTooNewError.check(what, v, known, optsCode(opts));
  const from = check(version.read());
  for (;;) {
    const done = db
      .transaction(() => {
        const v = check(version.read());
        if (v >= known) return known;
        const step = steps[v];
        let next = v + 1;
        if (typeof step === 'string') db.exec(step);
        else next = step?.(db) ?? next;
        if (!Number.isSafeInteger(next) || next < v || next > known)
          throw new RangeError(`schema step ${v} reached version ${next}`);
        if (next === v) return v;
        version.write(next);
        return next >= known ? known : undefined;
      })
      .immediate();
    if (done !== undefined) return { from, to: done };
  }
}

/** The schema version of `db` (user_version, or the named row), without migrating. */
export function readSqliteVersion(
  db: SqliteDatabase,
  versionRow?: { table: string; name: string },
): number {
  return sqliteVersion(db, versionRow).read();
}

function optsCode(opts: MigrateSqliteOptions): { code?: StoreErrorCode } {
  return opts.code === undefined ? {} : { code: opts.code };
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

function sqliteVersion(
  db: SqliteDatabase,
  row: { table: string; name: string } | undefined,
): { read(): number; write(v: number): void } {
  if (row === undefined) {
    return {
      read: () => db.pragma('user_version', { simple: true }) as number,
      write: (v) => void db.pragma(`user_version = ${v}`),
    };
  }
  if (!IDENT.test(row.table)) throw new TypeError('version table must be an identifier');
  db.exec(
    `CREATE TABLE IF NOT EXISTS ${row.table} (name TEXT PRIMARY KEY, version INTEGER NOT NULL)`,
  );
  const get = db.prepare<[string], { version: number }>(
    `SELECT version FROM ${row.table} WHERE name = ?`,
  );
  const put = db.prepare<[string, number]>(
    `INSERT INTO ${row.table} (name, version) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET version = excluded.version`,
  );
  return {
    read: () => get.get(row.name)?.version ?? 0,
    write: (v) => void put.run(row.name, v),
  };
}

const SQL = new WeakMap<SqliteDatabase, Sql>();

/** The `Sql` of a connection (statements prepared once per text and kept). */
export function sqliteSql(db: SqliteDatabase): Sql {
  let sql = SQL.get(db);
  if (sql) return sql;
  const cache = new Map<string, Database.Statement<SqlValue[]>>();
  const stmt = (text: string): Database.Statement<SqlValue[]> => {
    let s = cache.get(text);
    if (!s) cache.set(text, (s = db.prepare<SqlValue[]>(text)));
    return s;
  };
  sql = {
    dialect: 'sqlite',
    all: <R>(text: string, args: readonly SqlValue[]) => stmt(text).all(...args) as R[],
    run: (text: string, args: readonly SqlValue[]) => stmt(text).run(...args).changes,
  };
  SQL.set(db, sql);
  return sql;
}

/**
 * Runs a flow (flow.ts) in one transaction of `db`: IMMEDIATE (the write lock taken at once, so
 * a read-then-write cannot be overtaken) unless `write` is false.
 * @throws whatever the flow throws; the transaction is rolled back.
 */
export function runSqlite<T>(db: SqliteDatabase, flow: (sql: Sql) => Flow<T>, write = true): T {
  const tx = db.transaction(() => runSync(flow(sqliteSql(db))));
  return write ? tx.immediate() : tx();
}

/** True for an error SQLite reported (it has a `SQLITE_...` code). */
export function isSqliteError(err: unknown): err is Error & { code: string } {
  return err instanceof Database.SqliteError;
}
