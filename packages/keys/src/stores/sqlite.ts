/**
 * The wrapped key store's tables in a SQLite file of their own (never the relay's message
 * database), the default: `<dataDir>/keys/keys.db`, 0600 in a 0700 directory. WAL with
 * synchronous=FULL so an acknowledged key survives a power cut; secure_delete plus a WAL
 * checkpoint on destroy and rewrap so shredded or superseded wrapped keys do not linger in free
 * pages or the log. The store's logic is key-store.ts.
 */
import type Database from 'better-sqlite3';
import { LatchkeyError } from '@latchkey/protocol';
import { migrateSqlite, openSqlite } from '@latchkey/storage/sqlite';
import { openKeyStore } from './open-store.ts';
import {
  isGenerations,
  type KeyStoreOptions,
  type WrappedKeyManager,
} from './wrapped-key-manager.ts';
import {
  contactOf,
  keyRowOf,
  type ContactSql,
  type KeySql,
  rewrapId,
  unavailable,
  unknownContact,
  destroyed,
  type ContactRow,
  type GenerationRow,
  type KeyRow,
  type KeyTable,
  type ReadRow,
  type RewrapCommit,
} from './key-table.ts';

/** Schema version stored in `PRAGMA user_version`; each step below migrates from the previous. */
export const INTERNAL_SCHEMA_VERSION = 3;

const MIGRATIONS: readonly string[] = [
  // 0 -> 1
  `CREATE TABLE meta (
     name  TEXT PRIMARY KEY,
     value BLOB NOT NULL
   ) STRICT;
   CREATE TABLE contacts (
     contact_id    TEXT PRIMARY KEY,
     current_epoch INTEGER NOT NULL,
     created_at    INTEGER NOT NULL,
     destroyed_at  INTEGER
   ) STRICT;
   CREATE TABLE content_keys (
     contact_id TEXT NOT NULL REFERENCES contacts (contact_id),
     epoch      INTEGER NOT NULL,
     wrapped    BLOB NOT NULL,
     created_at INTEGER NOT NULL,
     PRIMARY KEY (contact_id, epoch)
   ) STRICT, WITHOUT ROWID;`,
  // 1 -> 2: key generations. A store that already holds tombstones had shreds under its one KEK.
  `CREATE TABLE kek_generations (
     generation INTEGER PRIMARY KEY,
     state      TEXT NOT NULL CHECK (state IN ('current', 'retiring', 'destroyed')),
     created_at INTEGER NOT NULL,
     tainted_at INTEGER,
     retired_at INTEGER,
     rewrapped  INTEGER
   ) STRICT;
   CREATE UNIQUE INDEX kek_generations_one_current ON kek_generations (state) WHERE state = 'current';
   INSERT INTO kek_generations (generation, state, created_at, tainted_at)
     VALUES (1, 'current', CAST(strftime('%s', 'now') AS INTEGER) * 1000,
             (SELECT min(destroyed_at) FROM contacts WHERE destroyed_at IS NOT NULL));`,
  // 2 -> 3: destroy notices owed to an external key manager (destroy-notices.ts).
  `CREATE TABLE destroy_notices (
     contact_id TEXT PRIMARY KEY,
     owed_since INTEGER NOT NULL
   ) STRICT;`,
];

export interface WrappedKeyManagerOptions extends KeyStoreOptions {
  /** The SQLite file, e.g. `<dataDir>/keys/keys.db`. Missing directories are created 0700. */
  path: string;
}

/**
 * Opens (creating when missing) a wrapped key store at `opts.path` whose keys `opts.wrapper`
 * wraps. With a local wrapper (`checkAtOpen`) it checks that the KEK is the one the store was
 * created with. On failure the wrapper is closed.
 * @throws LatchkeyError KEY_UNAVAILABLE when the KEK does not match the store, the schema is
 *   newer than this build, or the file cannot be opened.
 */
export async function openWrappedKeyManager(
  opts: WrappedKeyManagerOptions,
): Promise<WrappedKeyManager> {
  let db: Database.Database;
  try {
    db = openKeyDatabase(opts.path);
  } catch (err) {
    if (!isGenerations(opts.wrapper)) await opts.wrapper.close();
    throw err;
  }
  return openKeyStore(new SqliteKeyTable(db), { ...opts, where: opts.path });
}

/** Opens the key database file with the store's pragmas and schema. */
export function openKeyDatabase(path: string): Database.Database {
  let db: Database.Database | undefined;
  try {
    db = openSqlite(path, { synchronous: 'FULL', secureDelete: true, private: true });
    migrateSqlite(db, MIGRATIONS, `key database ${path}`, { code: 'KEY_UNAVAILABLE' });
    return db;
  } catch (err) {
    db?.close();
    throw unavailable('cannot open key database', err);
  }
}

/** Runs a synchronous SQLite step; anything but a LatchkeyError becomes KEY_UNAVAILABLE. */
function guard<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw unavailable('key store unavailable', err);
  }
}

class SqliteKeyTable implements KeyTable {
  readonly #db: Database.Database;
  readonly #sql;

  constructor(db: Database.Database) {
    this.#db = db;
    this.#sql = {
      contact: db.prepare<[string], ContactSql>(
        'SELECT current_epoch, destroyed_at FROM contacts WHERE contact_id = ?',
      ),
      key: db.prepare<[string, number], { wrapped: Uint8Array }>(
        'SELECT wrapped FROM content_keys WHERE contact_id = ? AND epoch = ?',
      ),
      allKeys: db.prepare<[], KeySql>(
        'SELECT contact_id, epoch, wrapped FROM content_keys ORDER BY contact_id, epoch',
      ),
      insertContact: db.prepare<[string, number]>(
        'INSERT OR IGNORE INTO contacts (contact_id, current_epoch, created_at) VALUES (?, 0, ?)',
      ),
      insertKey: db.prepare<[string, number, Uint8Array, number]>(
        'INSERT INTO content_keys (contact_id, epoch, wrapped, created_at) VALUES (?, ?, ?, ?)',
      ),
      updateKey: db.prepare<[Uint8Array, string, number]>(
        'UPDATE content_keys SET wrapped = ? WHERE contact_id = ? AND epoch = ?',
      ),
      setEpoch: db.prepare<[number, string]>(
        'UPDATE contacts SET current_epoch = ? WHERE contact_id = ?',
      ),
      deleteKeys: db.prepare<[string]>('DELETE FROM content_keys WHERE contact_id = ?'),
      tombstone: db.prepare<[string, number, number]>(
        `INSERT INTO contacts (contact_id, current_epoch, created_at, destroyed_at) VALUES (?, 0, ?, ?)
         ON CONFLICT (contact_id) DO UPDATE SET destroyed_at = coalesce(destroyed_at, excluded.destroyed_at)`,
      ),
      check: db.prepare<[], { value: Uint8Array }>(
        "SELECT value FROM meta WHERE name = 'kek_check'",
      ),
      addCheck: db.prepare<[Uint8Array]>(
        "INSERT OR IGNORE INTO meta (name, value) VALUES ('kek_check', ?)",
      ),
      setCheck: db.prepare<[Uint8Array]>(
        "INSERT OR REPLACE INTO meta (name, value) VALUES ('kek_check', ?)",
      ),
      deleteCheck: db.prepare("DELETE FROM meta WHERE name = 'kek_check'"),
      generations: db.prepare<
        [],
        { generation: number; state: 'current' | 'retiring'; tainted_at: number | null }
      >(
        "SELECT generation, state, tainted_at FROM kek_generations WHERE state <> 'destroyed' ORDER BY generation",
      ),
      taint: db.prepare<[number]>(
        "UPDATE kek_generations SET tainted_at = coalesce(tainted_at, ?) WHERE state = 'current'",
      ),
      retire: db.prepare<[number, number]>(
        "UPDATE kek_generations SET state = 'retiring', retired_at = ?, rewrapped = ? WHERE state = 'current'",
      ),
      newGeneration: db.prepare<[number]>(
        "INSERT INTO kek_generations (generation, state, created_at) SELECT max(generation) + 1, 'current', ? FROM kek_generations",
      ),
      destroyedGeneration: db.prepare<[number]>(
        "UPDATE kek_generations SET state = 'destroyed' WHERE generation = ? AND state = 'retiring'",
      ),
      ping: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM meta'),
      oweNotice: db.prepare<[{ contactId: string; now: number }]>(
        `INSERT OR IGNORE INTO destroy_notices (contact_id, owed_since) SELECT @contactId, @now
         WHERE NOT EXISTS (SELECT 1 FROM contacts WHERE contact_id = @contactId AND destroyed_at IS NOT NULL)`,
      ),
      owedNotices: db.prepare<[number], { contact_id: string }>(
        'SELECT contact_id FROM destroy_notices ORDER BY owed_since, contact_id LIMIT ?',
      ),
      settleNotice: db.prepare<[string]>('DELETE FROM destroy_notices WHERE contact_id = ?'),
    };
  }

  async read(contactId: string, epoch: number | undefined): Promise<ReadRow | undefined> {
    return guard(() =>
      this.#db.transaction(() => {
        const c = this.#sql.contact.get(contactId);
        if (c === undefined) return undefined;
        const k = this.#sql.key.get(contactId, epoch ?? c.current_epoch);
        return { ...contactOf(c), wrapped: k?.wrapped ?? null };
      })(),
    );
  }

  async contact(contactId: string): Promise<ContactRow | undefined> {
    const c = guard(() => this.#sql.contact.get(contactId));
    return c === undefined ? undefined : contactOf(c);
  }

  async create(
    contactId: string,
    wrapped: Uint8Array,
    now: number,
    valid: () => boolean,
  ): Promise<boolean> {
    return guard(() =>
      this.#db
        .transaction(() => {
          if (!valid()) return false;
          // Whoever inserts the contact row first also stores epoch 0; a loser reads the winner's.
          if (this.#sql.insertContact.run(contactId, now).changes === 1)
            this.#sql.insertKey.run(contactId, 0, wrapped, now);
          return true;
        })
        .immediate(),
    );
  }

  async addEpoch(
    contactId: string,
    current: number,
    wrapped: Uint8Array,
    now: number,
    valid: () => boolean,
  ): Promise<boolean> {
    return guard(() =>
      this.#db
        .transaction(() => {
          const c = this.#sql.contact.get(contactId);
          if (c === undefined) throw unknownContact();
          if (c.destroyed_at !== null) throw destroyed();
          if (c.current_epoch !== current || !valid()) return false;
          this.#sql.insertKey.run(contactId, current + 1, wrapped, now);
          this.#sql.setEpoch.run(current + 1, contactId);
          return true;
        })
        .immediate(),
    );
  }

  async destroy(contactId: string, now: number, oweNotice: boolean): Promise<void> {
    guard(() => {
      this.#db
        .transaction(() => {
          // Keys removed: a copy of the file taken before still holds them, wrapped under the
          // current KEK, until that generation is retired (completing the shred).
          if (this.#sql.deleteKeys.run(contactId).changes > 0) this.#sql.taint.run(now);
          // Before the tombstone's upsert, which would hide that it is the first.
          if (oweNotice) this.#sql.oweNotice.run({ contactId, now });
          this.#sql.tombstone.run(contactId, now, now);
        })
        .immediate();
      // secure_delete zeroed the freed cells; move that into the main file and empty the WAL so
      // no frame still carries the old wrapped keys. A busy reader only delays this.
      this.#db.pragma('wal_checkpoint(TRUNCATE)');
    });
  }

  async allKeys(): Promise<KeyRow[]> {
    return guard(() => this.#sql.allKeys.all()).map(keyRowOf);
  }

  async commitRewrap(c: RewrapCommit): Promise<number> {
    const n = guard(() =>
      this.#db
        .transaction(() => {
          const rows = this.#sql.allKeys.all().map(keyRowOf);
          // Another connection added or changed keys meanwhile: wrap those too, then retry.
          if (rows.some((r) => !c.done.has(rewrapId(r)))) return -1;
          for (const r of rows) {
            const w = c.done.get(rewrapId(r));
            if (w !== undefined) this.#sql.updateKey.run(w, r.contactId, r.epoch);
          }
          // A wrapper without a check value must not leave the old KEK's one behind.
          if (c.check !== undefined) this.#sql.setCheck.run(c.check);
          else this.#sql.deleteCheck.run();
          // The old generation is retired (its KEK still to be destroyed), a new one current.
          if (c.newGeneration) {
            this.#sql.retire.run(c.now, rows.length);
            this.#sql.newGeneration.run(c.now);
          }
          return rows.length;
        })
        .immediate(),
    );
    if (n >= 0) guard(() => this.#db.pragma('wal_checkpoint(TRUNCATE)'));
    return n;
  }

  async keyCheck(fresh: Uint8Array): Promise<Uint8Array> {
    return guard(() => {
      this.#sql.addCheck.run(fresh);
      const row = this.#sql.check.get();
      if (row === undefined)
        throw new LatchkeyError('KEY_UNAVAILABLE', 'key database lost its key-check value');
      return row.value;
    });
  }

  async generations(): Promise<GenerationRow[]> {
    return guard(() => this.#sql.generations.all()).map((r) => ({
      generation: r.generation,
      state: r.state,
      taintedAt: r.tainted_at,
    }));
  }

  async markDestroyed(generation: number): Promise<void> {
    guard(() => this.#sql.destroyedGeneration.run(generation));
  }

  async owedNotices(limit: number): Promise<string[]> {
    return guard(() => this.#sql.owedNotices.all(limit).map((r) => r.contact_id));
  }

  async settleNotice(contactId: string): Promise<void> {
    guard(() => this.#sql.settleNotice.run(contactId));
  }

  async ping(): Promise<void> {
    guard(() => this.#sql.ping.get());
  }

  async close(): Promise<void> {
    this.#db.close();
  }
}
