/**
 * The reference key manager's SQLite file (store.ts): created private (mode 0600, directory
 * 0700), opened in WAL with full sync, secure delete and foreign keys, and given its schema:
 * KEK versions, the key-store model's contacts and wrapped keys, revocations, destroy notices,
 * request nonces and the request audit.
 */
import { migrateSqlite, openSqlite, type SqliteDatabase } from '@latchkey/storage/sqlite';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS key_versions (
  key_id     TEXT NOT NULL,
  version    INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (key_id, version)
) STRICT;
CREATE TABLE IF NOT EXISTS store_contacts (
  contact_id    TEXT PRIMARY KEY,
  current_epoch INTEGER NOT NULL,
  created_at    INTEGER NOT NULL,
  destroyed_at  INTEGER
) STRICT;
CREATE TABLE IF NOT EXISTS store_keys (
  contact_id TEXT NOT NULL REFERENCES store_contacts (contact_id),
  epoch      INTEGER NOT NULL,
  wrapped    BLOB NOT NULL,
  PRIMARY KEY (contact_id, epoch)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS revoked (
  contact_id TEXT PRIMARY KEY,
  revoked_at INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS destroyed (
  key_id       TEXT NOT NULL,
  contact_id   TEXT NOT NULL,
  destroyed_at INTEGER NOT NULL,
  PRIMARY KEY (key_id, contact_id)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nonces (
  nonce      TEXT PRIMARY KEY,
  expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
  id         INTEGER PRIMARY KEY,
  time       INTEGER NOT NULL,
  client_id  TEXT,
  method     TEXT NOT NULL,
  path       TEXT NOT NULL,
  operation  TEXT NOT NULL,
  contact_id TEXT,
  epoch      INTEGER,
  reason     TEXT,
  status     INTEGER NOT NULL,
  outcome    TEXT NOT NULL
) STRICT;`;

/** Opens (creating when missing) the key manager's file at `path` with its schema. */
export function openKmsDb(path: string): SqliteDatabase {
  const db = openSqlite(path, { private: true, synchronous: 'FULL', secureDelete: true });
  try {
    // IF NOT EXISTS: files written before the schema was versioned already have the tables.
    migrateSqlite(db, [SCHEMA], `key manager store ${path}`, {
      versionRow: { table: 'kms_schema', name: 'kms' },
    });
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}
