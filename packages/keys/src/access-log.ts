/**
 * The key access log: one record per content key handed out or refused, and per contact whose
 * keys were destroyed (contact, epoch, participant, time, outcome), append-only and
 * tamper-evident. Each record carries
 * `hash = H(prev_hash || record)` with H = SHA-256, or HMAC-SHA256 under a log key when one is
 * given (then a forger also needs that key); the first record chains from 32 zero bytes. A
 * changed, removed, inserted or reordered record breaks the chain at that point; cutting off the
 * tail is caught by comparing with a head noted elsewhere (`head()`, `verify({ head })`).
 *
 * Stored in the key database (table `key_access_log`, created here and versioned by its own
 * row of `keys_schema`, apart from the key store's user_version), with triggers that abort UPDATE and DELETE. Holds no key material. The
 * streams that forward it (docs/siem.md) keep their cursors in the same file (table
 * `key_access_log_cursors`), so a restored backup rewinds log and cursors together.
 */
import type Database from 'better-sqlite3';
import { LatchkeyError } from '@latchkey/protocol';
import { migrateSqlite, openSqlite, type SqliteStep } from '@latchkey/storage/sqlite';
import type { AccessLogHead, AccessLogStore, AccessLogVerdict } from './service-state.ts';
import {
  chainRow,
  chainedFrom,
  storedRecord,
  verifyChain,
  type AccessLogRow,
  type ChainRow,
} from './access-chain.ts';
import {
  ACCESS_LOG_GENESIS,
  GENESIS,
  accessRecordHash,
  checkedRecord,
  hex,
  type AccessChainAlgorithm,
  type AccessRecord,
  type ChainedAccessRecord,
  type StoredAccessRecord,
} from './access-record.ts';

export type { AccessLogHead, AccessLogVerdict } from './service-state.ts';

export interface KeyAccessLogOptions {
  /** The key database file (or any SQLite file). */
  path: string;
  /** Optional HMAC key of the chain (at least 32 bytes), e.g. derived from the master key. */
  key?: Uint8Array;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS key_access_log (
  seq            INTEGER PRIMARY KEY,
  contact_id     TEXT NOT NULL,
  epoch          INTEGER NOT NULL,
  participant_id TEXT NOT NULL,
  time           INTEGER NOT NULL,
  outcome        TEXT NOT NULL,
  hash           BLOB NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS key_access_log_cursors (
  name TEXT PRIMARY KEY,
  seq  INTEGER NOT NULL
) STRICT;
CREATE TRIGGER IF NOT EXISTS key_access_log_no_update BEFORE UPDATE ON key_access_log
  BEGIN SELECT RAISE(ABORT, 'key_access_log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS key_access_log_no_delete BEFORE DELETE ON key_access_log
  BEGIN SELECT RAISE(ABORT, 'key_access_log is append-only'); END;`;

/**
 * Step `i` migrates version `i` to `i + 1`, kept in row `access_log` of `keys_schema` (the file's
 * user_version belongs to the key store). IF NOT EXISTS: files written before the log was
 * versioned already have its tables.
 */
const MIGRATIONS: readonly SqliteStep[] = [SCHEMA];

type Row = AccessLogRow;

export class KeyAccessLog implements AccessLogStore {
  readonly #db: Database.Database;
  readonly #key: Uint8Array | undefined;
  readonly #listeners = new Set<(r: StoredAccessRecord) => void>();
  #closed = false;

  /**
   * Opens the log in `opts.path`, creating its table when missing.
   * @throws RangeError for a log key shorter than 32 bytes; LatchkeyError KEY_UNAVAILABLE when
   *   the file cannot be opened.
   */
  constructor(opts: KeyAccessLogOptions) {
    if (opts.key !== undefined && opts.key.length < 32)
      throw new RangeError('log key must be at least 32 bytes');
    this.#key = opts.key === undefined ? undefined : Uint8Array.from(opts.key);
    let db: Database.Database | undefined;
    try {
      db = openSqlite(opts.path, { synchronous: 'FULL', private: true });
      migrateSqlite(db, MIGRATIONS, `key access log ${opts.path}`, {
        code: 'KEY_UNAVAILABLE',
        versionRow: { table: 'keys_schema', name: 'access_log' },
      });
    } catch (err) {
      db?.close();
      if (LatchkeyError.is(err)) throw err;
      throw new LatchkeyError('KEY_UNAVAILABLE', 'key access log unavailable', {
        cause: err,
        detail: err instanceof Error ? err.message : String(err),
      });
    }
    this.#db = db;
  }

  #hash(prev: Uint8Array, seq: number, r: AccessRecord): Uint8Array {
    return accessRecordHash(prev, seq, r, this.#key);
  }

  /** How this log's chain is hashed. */
  get algorithm(): AccessChainAlgorithm {
    return this.#key === undefined ? 'sha256' : 'hmac-sha256';
  }

  /**
   * Calls `fn` after each record this instance appends (after its commit; a throwing listener is
   * ignored). Records appended by another process are not seen: poll `listChained` for those.
   * @returns a function that removes the listener.
   */
  onAppend(fn: (r: StoredAccessRecord) => void): () => void {
    this.#listeners.add(fn);
    return () => void this.#listeners.delete(fn);
  }

  #live(): void {
    if (this.#closed) throw new LatchkeyError('KEY_UNAVAILABLE', 'key access log is closed');
  }

  /**
   * Appends one record (one transaction, safe across processes).
   * @returns the stored record with its seq and hash.
   * @throws LatchkeyError BAD_REQUEST for a malformed record, KEY_UNAVAILABLE when the
   *   database fails.
   */
  append(r: AccessRecord): StoredAccessRecord {
    const [stored] = this.appendMany([r]);
    return stored!;
  }

  /**
   * Appends `records` in order in one transaction: one sync to disk for all of them (the key
   * service's group commit of a burst of hand-outs, apps/keyd access-batch.ts).
   * @returns the stored records with their seq and hash.
   * @throws LatchkeyError BAD_REQUEST when a record is malformed (nothing is appended),
   *   KEY_UNAVAILABLE when the database fails.
   */
  appendMany(records: readonly AccessRecord[]): StoredAccessRecord[] {
    this.#live();
    const stored = this.#commit(records.map(checkedRecord));
    for (const s of stored) {
      for (const fn of this.#listeners) {
        try {
          fn(s);
        } catch {
          // A listener (a stream's wake-up) never fails an append.
        }
      }
    }
    return stored;
  }

  /** Stores `records` in order in one IMMEDIATE transaction, chained from the newest record. */
  #commit(records: readonly AccessRecord[]): StoredAccessRecord[] {
    try {
      return this.#db
        .transaction(() => {
          const last = this.#db
            .prepare<[], { seq: number; hash: Uint8Array }>(
              'SELECT seq, hash FROM key_access_log ORDER BY seq DESC LIMIT 1',
            )
            .get();
          let seq = last?.seq ?? 0;
          let prev = last?.hash ?? GENESIS;
          const insert = this.#db.prepare(
            'INSERT INTO key_access_log (seq, contact_id, epoch, participant_id, time, outcome, hash) VALUES (?, ?, ?, ?, ?, ?, ?)',
          );
          return records.map((record) => {
            seq++;
            const hash = this.#hash(prev, seq, record);
            prev = hash;
            insert.run(
              seq,
              record.contactId,
              record.epoch,
              record.participantId,
              record.time,
              record.outcome,
              hash,
            );
            return { ...record, seq, hash: hex(hash) };
          });
        })
        .immediate();
    } catch (err) {
      throw new LatchkeyError('KEY_UNAVAILABLE', 'key access log unavailable', {
        cause: err,
        detail: err instanceof Error ? err.message : String(err),
      });
    }
  }

  /** Records after `afterSeq` (default 0), oldest first, optionally of one contact. */
  list(opts: { afterSeq?: number; contactId?: string; limit?: number } = {}): StoredAccessRecord[] {
    this.#live();
    const limit = Math.min(Math.max(opts.limit ?? 1000, 1), 10_000);
    const rows =
      opts.contactId === undefined
        ? this.#db
            .prepare<[number, number], Row>(
              'SELECT * FROM key_access_log WHERE seq > ? ORDER BY seq LIMIT ?',
            )
            .all(opts.afterSeq ?? 0, limit)
        : this.#db
            .prepare<[number, string, number], Row>(
              'SELECT * FROM key_access_log WHERE seq > ? AND contact_id = ? ORDER BY seq LIMIT ?',
            )
            .all(opts.afterSeq ?? 0, opts.contactId, limit);
    return rows.map(storedRecord);
  }

  /**
   * Records after `afterSeq`, oldest first, each with the hash it chains from (`prevHash`), at
   * most `limit` (default 500, at most 10,000): what a stream forwards.
   */
  listChained(afterSeq: number, limit = 500): ChainedAccessRecord[] {
    this.#live();
    const n = Math.min(Math.max(limit, 1), 10_000);
    // The hash the first one chains from: the stored record before it (genesis for seq 1).
    const prevRow = this.#db
      .prepare<[number], { hash: Uint8Array }>(
        'SELECT hash FROM key_access_log WHERE seq <= ? ORDER BY seq DESC LIMIT 1',
      )
      .get(afterSeq);
    return chainedFrom(
      prevRow === undefined ? ACCESS_LOG_GENESIS : hex(prevRow.hash),
      this.list({ afterSeq: Math.max(afterSeq, 0), limit: n }),
    );
  }

  /** The position a named stream has forwarded up to (0 when it never ran). */
  cursor(name: string): number {
    this.#live();
    const row = this.#db
      .prepare<[string], { seq: number }>('SELECT seq FROM key_access_log_cursors WHERE name = ?')
      .get(name);
    return row?.seq ?? 0;
  }

  /**
   * Stores a named stream's position (durably, before it returns).
   * @throws LatchkeyError KEY_UNAVAILABLE when the database fails.
   */
  setCursor(name: string, seq: number): void {
    this.#live();
    if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError('cursor must be a seq');
    try {
      this.#db
        .prepare(
          'INSERT INTO key_access_log_cursors (name, seq) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET seq = excluded.seq',
        )
        .run(name, seq);
    } catch (err) {
      throw new LatchkeyError('KEY_UNAVAILABLE', 'key access log unavailable', {
        cause: err,
        detail: err instanceof Error ? err.message : String(err),
      });
    }
  }

  /** The newest record's seq and hash (seq 0 and the zero hash when empty). */
  head(): AccessLogHead {
    this.#live();
    const last = this.#db
      .prepare<[], { seq: number; hash: Uint8Array }>(
        'SELECT seq, hash FROM key_access_log ORDER BY seq DESC LIMIT 1',
      )
      .get();
    return { seq: last?.seq ?? 0, hash: hex(last?.hash ?? GENESIS) };
  }

  /**
   * Walks the whole chain. With `head` (noted earlier from head()), also checks that that
   * record is still there unchanged, so cutting off the tail is caught.
   */
  verify(opts: { head?: AccessLogHead } = {}): AccessLogVerdict {
    this.#live();
    const rows = this.#db.prepare<[], Row>('SELECT * FROM key_access_log ORDER BY seq').iterate();
    return verifyChain(
      (function* (): Generator<ChainRow> {
        for (const row of rows) yield chainRow(row);
      })(),
      (prev, seq, r) => this.#hash(prev, seq, r),
      opts.head,
    );
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    this.#db.close();
    this.#key?.fill(0);
  }
}
