/**
 * The key access log: one record per content key handed out or refused (contact, epoch,
 * participant, time, outcome), append-only and tamper-evident. Each record carries
 * `hash = H(prev_hash || record)` with H = SHA-256, or HMAC-SHA256 under a log key when one is
 * given (then a forger also needs that key); the first record chains from 32 zero bytes. A
 * changed, removed, inserted or reordered record breaks the chain at that point; cutting off the
 * tail is caught by comparing with a head noted elsewhere (`head()`, `verify({ head })`).
 *
 * Stored in the key database (table `key_access_log`, created here, outside the key store's
 * schema versions), with triggers that abort UPDATE and DELETE. Holds no key material.
 */
import Database from 'better-sqlite3';
import { concatBytes, utf8Encode } from '@latchkey/crypto/codec';
import { constantTimeEqual } from '@latchkey/crypto/compare';
import { hmacSha256, sha256 } from '@latchkey/crypto/mac';
import { Epoch, Id, LatchkeyError } from '@latchkey/protocol';
import { preparePrivateFile } from './adapters/wrapped.ts';

export type AccessOutcome = 'granted' | 'denied' | 'unavailable';
const OUTCOMES: ReadonlySet<string> = new Set<AccessOutcome>(['granted', 'denied', 'unavailable']);

export interface AccessRecord {
  contactId: string;
  epoch: number;
  participantId: string;
  /** Unix milliseconds. */
  time: number;
  outcome: AccessOutcome;
}

export interface StoredAccessRecord extends AccessRecord {
  /** 1, 2, 3, ... without gaps. */
  seq: number;
  /** Hex of this record's chain hash. */
  hash: string;
}

/** The newest record's position and hash, to note outside the database. */
export interface AccessLogHead {
  seq: number;
  hash: string;
}

export type AccessLogVerdict =
  { ok: true; count: number; head: AccessLogHead } | { ok: false; seq: number; reason: string };

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
CREATE TRIGGER IF NOT EXISTS key_access_log_no_update BEFORE UPDATE ON key_access_log
  BEGIN SELECT RAISE(ABORT, 'key_access_log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS key_access_log_no_delete BEFORE DELETE ON key_access_log
  BEGIN SELECT RAISE(ABORT, 'key_access_log is append-only'); END;`;

const GENESIS: Uint8Array = new Uint8Array(32);

interface Row {
  seq: number;
  contact_id: string;
  epoch: number;
  participant_id: string;
  time: number;
  outcome: string;
  hash: Uint8Array;
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** Canonical bytes of a record: length-prefixed fields, so no two records encode alike. */
function encode(seq: number, r: AccessRecord): Uint8Array {
  const json = JSON.stringify([seq, r.contactId, r.epoch, r.participantId, r.time, r.outcome]);
  return utf8Encode(`latchkey.v1.access-log\n${json}`);
}

export class KeyAccessLog {
  readonly #db: Database.Database;
  readonly #key: Uint8Array | undefined;
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
      if (opts.path !== ':memory:') preparePrivateFile(opts.path);
      db = new Database(opts.path);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('busy_timeout = 5000');
      db.exec(SCHEMA);
    } catch (err) {
      db?.close();
      throw new LatchkeyError('KEY_UNAVAILABLE', 'key access log unavailable', {
        cause: err,
        detail: err instanceof Error ? err.message : String(err),
      });
    }
    this.#db = db;
  }

  #hash(prev: Uint8Array, seq: number, r: AccessRecord): Uint8Array {
    const data = concatBytes(prev, encode(seq, r));
    return this.#key === undefined ? sha256(data) : hmacSha256(this.#key, data);
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
    this.#live();
    if (
      !Id.safeParse(r.contactId).success ||
      !Id.safeParse(r.participantId).success ||
      !Epoch.safeParse(r.epoch).success ||
      !Number.isSafeInteger(r.time) ||
      r.time < 0 ||
      !OUTCOMES.has(r.outcome)
    ) {
      throw new LatchkeyError('BAD_REQUEST', 'malformed access record');
    }
    const record: AccessRecord = {
      contactId: r.contactId,
      epoch: r.epoch,
      participantId: r.participantId,
      time: r.time,
      outcome: r.outcome,
    };
    try {
      return this.#db
        .transaction(() => {
          const last = this.#db
            .prepare<[], { seq: number; hash: Uint8Array }>(
              'SELECT seq, hash FROM key_access_log ORDER BY seq DESC LIMIT 1',
            )
            .get();
          const seq = (last?.seq ?? 0) + 1;
          const hash = this.#hash(last?.hash ?? GENESIS, seq, record);
          this.#db
            .prepare(
              'INSERT INTO key_access_log (seq, contact_id, epoch, participant_id, time, outcome, hash) VALUES (?, ?, ?, ?, ?, ?, ?)',
            )
            .run(
              seq,
              record.contactId,
              record.epoch,
              record.participantId,
              record.time,
              record.outcome,
              hash,
            );
          return { ...record, seq, hash: hex(hash) };
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
    return rows.map((row) => ({
      seq: row.seq,
      contactId: row.contact_id,
      epoch: row.epoch,
      participantId: row.participant_id,
      time: row.time,
      outcome: row.outcome as AccessOutcome,
      hash: hex(row.hash),
    }));
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
    let prev: Uint8Array = GENESIS;
    let expectSeq = 1;
    let sawHead = opts.head === undefined || opts.head.seq === 0;
    for (const row of this.#db
      .prepare<[], Row>('SELECT * FROM key_access_log ORDER BY seq')
      .iterate()) {
      if (row.seq !== expectSeq)
        return { ok: false, seq: expectSeq, reason: 'record missing or out of order' };
      const r: AccessRecord = {
        contactId: row.contact_id,
        epoch: row.epoch,
        participantId: row.participant_id,
        time: row.time,
        outcome: row.outcome as AccessOutcome,
      };
      const want = this.#hash(prev, row.seq, r);
      if (!(row.hash instanceof Uint8Array) || !constantTimeEqual(want, row.hash)) {
        return { ok: false, seq: row.seq, reason: 'record altered or chain broken' };
      }
      if (opts.head !== undefined && opts.head.seq === row.seq) {
        if (opts.head.hash !== hex(row.hash))
          return { ok: false, seq: row.seq, reason: 'head does not match' };
        sawHead = true;
      }
      prev = row.hash;
      expectSeq++;
    }
    if (!sawHead)
      return {
        ok: false,
        seq: opts.head?.seq ?? 0,
        reason: 'records after the last one were removed',
      };
    return { ok: true, count: expectSeq - 1, head: { seq: expectSeq - 1, hash: hex(prev) } };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
    this.#key?.fill(0);
  }
}
