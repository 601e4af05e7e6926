import { existsSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LatchkeyError } from '@latchkey/protocol';
import { SchemaTooNewError, StoreError } from '../src/errors.ts';
import { migrateSqlite, openSqlite, readSqliteVersion, type SqliteStep } from '../src/sqlite.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'latchkey-storage-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const STEPS: SqliteStep[] = [
  'CREATE TABLE a (x INTEGER NOT NULL)',
  (db) => void db.prepare('INSERT INTO a (x) VALUES (?)').run(7),
  'ALTER TABLE a ADD COLUMN y INTEGER',
];

describe('openSqlite', () => {
  it('opens in WAL with the chosen pragmas', () => {
    const path = join(dir, 'x.db');
    const db = openSqlite(path, { synchronous: 'FULL', secureDelete: true, busyTimeoutMs: 1234 });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('synchronous', { simple: true })).toBe(2);
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(db.pragma('secure_delete', { simple: true })).toBe(1);
    expect(db.pragma('busy_timeout', { simple: true })).toBe(1234);
    db.close();
    const plain = openSqlite(path, { foreignKeys: false });
    expect(plain.pragma('synchronous', { simple: true })).toBe(1);
    expect(plain.pragma('foreign_keys', { simple: true })).toBe(0);
    expect(plain.pragma('secure_delete', { simple: true })).toBe(0);
    expect(plain.pragma('busy_timeout', { simple: true })).toBe(5000);
    plain.close();
  });

  it.skipIf(process.platform === 'win32')(
    'private: the file 0600, a directory it creates 0700, a looser file tightened',
    () => {
      const path = join(dir, 'sub', 'k.db');
      openSqlite(path, { private: true }).close();
      expect(statSync(join(dir, 'sub')).mode & 0o777).toBe(0o700);
      expect(statSync(path).mode & 0o777).toBe(0o600);
      const loose = join(dir, 'loose.db');
      new Database(loose).close();
      expect(statSync(loose).mode & 0o077).not.toBe(0);
      openSqlite(loose, { private: true }).close();
      expect(statSync(loose).mode & 0o777).toBe(0o600);
      const mem = openSqlite(':memory:', { private: true });
      mem.close();
      expect(existsSync(':memory:')).toBe(false);
    },
  );
  it('readonly: an existing file only, nothing written; fileMustExist refuses to create', () => {
    const path = join(dir, 'ro.db');
    expect(() => openSqlite(path, { readonly: true })).toThrow();
    expect(() => openSqlite(path, { fileMustExist: true })).toThrow();
    expect(existsSync(path)).toBe(false);
    openSqlite(path).close();
    const ro = openSqlite(path, { readonly: true });
    expect(() => ro.exec('CREATE TABLE x (y)')).toThrow(/readonly/);
    ro.close();
  });
});

describe('migrateSqlite', () => {
  it('runs each step once by user_version, also across connections', () => {
    const path = join(dir, 'm.db');
    const a = openSqlite(path);
    const b = openSqlite(path);
    expect(migrateSqlite(a, STEPS.slice(0, 2), 'test db')).toEqual({ from: 0, to: 2 });
    expect(migrateSqlite(b, STEPS, 'test db')).toEqual({ from: 2, to: 3 });
    expect(migrateSqlite(a, STEPS, 'test db')).toEqual({ from: 3, to: 3 });
    expect(a.pragma('user_version', { simple: true })).toBe(3);
    expect(a.prepare('SELECT x, y FROM a').all()).toEqual([{ x: 7, y: null }]);
    a.close();
    b.close();
  });

  it('rolls a failing step back and keeps the version before it', () => {
    const db = openSqlite(join(dir, 'f.db'));
    expect(() =>
      migrateSqlite(db, [...STEPS, 'CREATE TABLE b (x); SELECT nope FROM nowhere'], 'x'),
    ).toThrow(/nowhere/);
    expect(readSqliteVersion(db)).toBe(3);
    expect(db.prepare("SELECT name FROM sqlite_master WHERE name = 'b'").all()).toEqual([]);
    db.close();
  });

  it('refuses a newer schema with SchemaTooNewError and changes nothing', () => {
    const path = join(dir, 'n.db');
    const db = openSqlite(path);
    db.pragma('user_version = 9');
    let err: unknown;
    try {
      migrateSqlite(db, STEPS, `key database ${path}`, { code: 'KEY_UNAVAILABLE' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SchemaTooNewError);
    expect(err).toBeInstanceOf(StoreError);
    expect(LatchkeyError.is(err, 'KEY_UNAVAILABLE')).toBe(true);
    const e = err as SchemaTooNewError;
    expect([e.reason, e.found, e.known]).toEqual(['NEWER_SCHEMA', 9, 3]);
    expect(e.message).toContain(`key database ${path} has schema version 9`);
    expect(readSqliteVersion(db)).toBe(9);
    expect(db.prepare("SELECT name FROM sqlite_master WHERE name = 'a'").all()).toEqual([]);
    db.close();
  });

  it('keeps the version in a row of its own table when the file is shared', () => {
    const db = openSqlite(join(dir, 's.db'));
    db.pragma('user_version = 42');
    const row = { table: 'side_schema', name: 'side' };
    expect(migrateSqlite(db, STEPS, 'side', { versionRow: row })).toEqual({ from: 0, to: 3 });
    expect(readSqliteVersion(db, row)).toBe(3);
    expect(db.pragma('user_version', { simple: true })).toBe(42);
    expect(() => migrateSqlite(db, STEPS.slice(0, 1), 'side', { versionRow: row })).toThrow(
      SchemaTooNewError,
    );
    expect(() =>
      migrateSqlite(db, STEPS, 'x', { versionRow: { table: 'bad name', name: 'n' } }),
    ).toThrow(TypeError);
    db.close();
  });

  it('a step may create the latest schema at once, or stop where the store finishes it', () => {
    const db = openSqlite(join(dir, 'j.db'));
    let sealed = false;
    const steps: SqliteStep[] = [
      (d) => {
        d.exec('CREATE TABLE t (x INTEGER, y INTEGER)');
        return 3;
      },
      // 1 -> 2 needs asynchronous work: stops here while it is not done
      () => (sealed ? 2 : 1),
      'ALTER TABLE t ADD COLUMN y INTEGER',
    ];
    expect(migrateSqlite(db, steps, 'x')).toEqual({ from: 0, to: 3 });
    db.pragma('user_version = 1');
    expect(migrateSqlite(db, steps, 'x')).toEqual({ from: 1, to: 1 });
    sealed = true;
    db.exec('ALTER TABLE t DROP COLUMN y');
    expect(migrateSqlite(db, steps, 'x')).toEqual({ from: 1, to: 3 });
    expect(() =>
      migrateSqlite(db, [() => 7], 'x', { versionRow: { table: 'v', name: 'n' } }),
    ).toThrow(RangeError);
    db.close();
  });
});
