/**
 * When each content-key epoch of a contact began, for scheduled rotation (DESIGN.md "Key
 * hierarchy": rotation adds an epoch). The key service asks `since(contact, epoch)` when it hands
 * a key out and rotates an epoch older than its limit; the KeyManager contract does not carry
 * creation times (the key-store model keeps keys at the enterprise), so the service notes them:
 * an epoch is dated by its rotation, or, when it was created elsewhere, by its first hand-out.
 *
 * A table of its own (`epoch_times`) in a SQLite file next to the membership table, versioned
 * by its own row of `keys_schema` (the file's user_version is the membership table's). Holds
 * ids, epochs and times only, never key material. `forget` drops a shredded contact's rows.
 */
import { LatchkeyError } from '@latchkey/protocol';
import type { EpochTimes } from './service-state.ts';
import {
  migrateSqlite,
  openSqlite,
  type SqliteDatabase,
  type SqliteStep,
} from '@latchkey/storage/sqlite';

/** Step `i` migrates version `i` to `i + 1` (@latchkey/storage `migrateSqlite`). */
const MIGRATIONS: readonly SqliteStep[] = [
  // IF NOT EXISTS: files written before the table was versioned already have it.
  `CREATE TABLE IF NOT EXISTS epoch_times (
     contact_id TEXT NOT NULL,
     epoch      INTEGER NOT NULL,
     since      INTEGER NOT NULL,
     PRIMARY KEY (contact_id, epoch)
   ) STRICT, WITHOUT ROWID;`,
];

function unavailable(err: unknown): LatchkeyError {
  if (LatchkeyError.is(err)) return err;
  return new LatchkeyError('KEY_UNAVAILABLE', 'epoch clock unavailable', {
    cause: err,
    detail: err instanceof Error ? err.message : String(err),
  });
}

export class EpochClock implements EpochTimes {
  readonly #db: SqliteDatabase;
  #closed = false;

  /**
   * Opens (creating) the table in `path` (`:memory:` for tests).
   * @throws LatchkeyError KEY_UNAVAILABLE when the file cannot be opened.
   */
  constructor(opts: { path: string }) {
    let db: SqliteDatabase | undefined;
    try {
      db = openSqlite(opts.path, { private: true, synchronous: 'NORMAL', secureDelete: true });
      migrateSqlite(db, MIGRATIONS, `epoch clock ${opts.path}`, {
        code: 'KEY_UNAVAILABLE',
        versionRow: { table: 'keys_schema', name: 'epoch_clock' },
      });
    } catch (err) {
      db?.close();
      throw unavailable(err);
    }
    this.#db = db;
  }

  #run<T>(fn: () => T): T {
    if (this.#closed) throw new LatchkeyError('KEY_UNAVAILABLE', 'epoch clock closed');
    try {
      return fn();
    } catch (err) {
      throw unavailable(err);
    }
  }

  /** When `epoch` of the contact began: noted as `now` the first time it is asked for. */
  since(contactId: string, epoch: number, now: number): number {
    return this.#run(() => {
      this.#db
        .prepare('INSERT OR IGNORE INTO epoch_times (contact_id, epoch, since) VALUES (?, ?, ?)')
        .run(contactId, epoch, now);
      const row = this.#db
        .prepare<[string, number], { since: number }>(
          'SELECT since FROM epoch_times WHERE contact_id = ? AND epoch = ?',
        )
        .get(contactId, epoch);
      return row?.since ?? now;
    });
  }

  /** Every dated epoch of a contact, ascending (read only: dates nothing). */
  epochs(contactId: string): { epoch: number; since: number }[] {
    return this.#run(() =>
      this.#db
        .prepare<[string], { epoch: number; since: number }>(
          'SELECT epoch, since FROM epoch_times WHERE contact_id = ? ORDER BY epoch',
        )
        .all(contactId),
    );
  }

  /** Notes that `epoch` began at `at` (after a rotation). */
  began(contactId: string, epoch: number, at: number): void {
    this.#run(() => {
      this.#db
        .prepare('INSERT OR REPLACE INTO epoch_times (contact_id, epoch, since) VALUES (?, ?, ?)')
        .run(contactId, epoch, at);
    });
  }

  /** Drops every row of a contact (after crypto-shredding). */
  forget(contactId: string): void {
    this.#run(() => {
      this.#db.prepare('DELETE FROM epoch_times WHERE contact_id = ?').run(contactId);
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }
}
