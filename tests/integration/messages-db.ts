/**
 * Edits a relay's `messages.db` as a hostile relay operator would (issue 13): delete a message
 * and renumber the rest, swap two seqs, replay a row under a new seq, cut the tail, rewrite a
 * stored envelope. Targets the SQLite store schema of packages/relay/src/store.ts, version 3
 * (`messages` rowid table with unique (contact_id, seq) and (contact_id, msg_id) indexes,
 * `contacts.head_seq`); any other version is refused, so that a schema change is noticed here.
 *
 * Safe while the relay runs: the store is in WAL mode, so this second connection writes its own
 * IMMEDIATE transactions (waiting up to `busy_timeout` for the relay's) and the relay's next
 * read transaction sees them; nothing is cached by the relay between transactions. The directory
 * must be writable (the WAL index `-shm` lives beside the file). With the relay stopped, opening
 * replays a WAL left behind, and closing checkpoints it. The journal mode is never changed.
 *
 * The envelope column is JSON text without `seq` (the relay adds the row's seq when it reads),
 * and the columns msg_id, sender_id, epoch and sent_at copy fields of it; this tool keeps them in
 * step when an envelope is rewritten. A replayed row needs its own msg_id column value (the
 * unique index), so its column gets a suffix while its envelope JSON keeps the original msgId.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';

/** The store schema version (`PRAGMA user_version`) this tool understands. */
export const MESSAGES_DB_SCHEMA_VERSION = 3;

const MESSAGE_COLUMNS = ['contact_id', 'seq', 'msg_id', 'sender_id', 'epoch', 'sent_at', 'stored_at', 'envelope'];

/** A stored envelope as JSON (only the fields named here are interpreted). */
export interface StoredJson {
  msgId?: string;
  senderId?: string;
  epoch?: number;
  sentAt?: number;
  seq?: number;
  [field: string]: unknown;
}

/** One row of `messages`. */
export interface MessageRow {
  contactId: string;
  seq: number;
  /** The msg_id column (for a replayed row: the envelope's msgId plus a suffix). */
  msgId: string;
  senderId: string;
  epoch: number;
  sentAt: number;
  storedAt: number;
  /** The envelope JSON, parsed. */
  envelope: StoredJson;
  /** The envelope column exactly as stored. */
  envelopeJson: string;
}

interface RawRow {
  contact_id: string;
  seq: number;
  msg_id: string;
  sender_id: string;
  epoch: number;
  sent_at: number;
  stored_at: number;
  envelope: string;
}

function toRow(r: RawRow): MessageRow {
  return {
    contactId: r.contact_id,
    seq: r.seq,
    msgId: r.msg_id,
    senderId: r.sender_id,
    epoch: r.epoch,
    sentAt: r.sent_at,
    storedAt: r.stored_at,
    envelope: JSON.parse(r.envelope) as StoredJson,
    envelopeJson: r.envelope,
  };
}

/** Seqs are moved out of the way through this offset (the seq column must stay >= 1). */
const PARK = 1_000_000_000;

/** An open `messages.db` for tampering. Every edit is one IMMEDIATE transaction. */
export class MessagesDb {
  readonly path: string;
  readonly #db: Database.Database;

  private constructor(path: string, db: Database.Database) {
    this.path = path;
    this.#db = db;
  }

  /**
   * Opens the store at `path`: a `messages.db` file, or a data directory (`DIR/relay/messages.db`,
   * as `latchkey start` and the test harness lay it out).
   * @throws Error when the file is missing or its schema version is not
   *   MESSAGES_DB_SCHEMA_VERSION (update this tool with the store's migrations).
   */
  static open(path: string): MessagesDb {
    const file = existsSync(path) && statSync(path).isDirectory() ? join(path, 'relay', 'messages.db') : path;
    if (!existsSync(file)) throw new Error(`messages-db: no database at ${file}`);
    const db = new Database(file, { fileMustExist: true });
    try {
      db.pragma('busy_timeout = 5000');
      db.pragma('foreign_keys = ON');
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version !== MESSAGES_DB_SCHEMA_VERSION) {
        throw new Error(
          `messages-db: ${file} has store schema version ${version}, this tool edits version ` +
            `${MESSAGES_DB_SCHEMA_VERSION} only; update tests/integration/messages-db.ts to packages/relay/src/store.ts`,
        );
      }
      const cols = (db.pragma('table_info(messages)') as { name: string }[]).map((c) => c.name);
      const missing = MESSAGE_COLUMNS.filter((c) => !cols.includes(c));
      if (missing.length > 0) throw new Error(`messages-db: ${file} lacks messages columns ${missing.join(', ')}`);
    } catch (err) {
      db.close();
      throw err;
    }
    return new MessagesDb(file, db);
  }

  /** Contacts with a row in `contacts`. */
  contacts(): string[] {
    return this.#db.prepare<[], { contact_id: string }>('SELECT contact_id FROM contacts ORDER BY contact_id').all().map((r) => r.contact_id);
  }

  /** The contact's head seq as the relay will report it (0: unknown contact). */
  head(contactId: string): number {
    return this.#db.prepare<[string], { head_seq: number }>('SELECT head_seq FROM contacts WHERE contact_id = ?').get(contactId)?.head_seq ?? 0;
  }

  /** The contact's rows in seq order. */
  rows(contactId: string): MessageRow[] {
    return this.#db
      .prepare<[string], RawRow>('SELECT * FROM messages WHERE contact_id = ? ORDER BY seq')
      .all(contactId)
      .map(toRow);
  }

  /** @throws Error when there is no row at `seq`. */
  row(contactId: string, seq: number): MessageRow {
    const r = this.#db.prepare<[string, number], RawRow>('SELECT * FROM messages WHERE contact_id = ? AND seq = ?').get(contactId, seq);
    if (!r) throw new Error(`messages-db: no message ${contactId}#${seq}`);
    return toRow(r);
  }

  /**
   * Deletes the message at `seq` and renumbers every later one down by one, head included:
   * the log stays gap-free, as if the message was never sent.
   * @throws Error when there is no row at `seq`.
   */
  deleteAndRenumber(contactId: string, seq: number): void {
    this.#tx(() => {
      this.row(contactId, seq);
      this.#db.prepare('DELETE FROM messages WHERE contact_id = ? AND seq = ?').run(contactId, seq);
      this.#shift(contactId, seq + 1, -1);
      this.#setHead(contactId, this.head(contactId) - 1);
    });
  }

  /**
   * Swaps the rows at seqs `a` and `b`: the envelope stored at `a` is read back at `b` and the
   * other way round.
   * @throws Error when either row is missing.
   */
  swap(contactId: string, a: number, b: number): void {
    this.#tx(() => {
      this.row(contactId, a);
      this.row(contactId, b);
      const move = this.#db.prepare('UPDATE messages SET seq = ? WHERE contact_id = ? AND seq = ?');
      move.run(PARK + a, contactId, a);
      move.run(a, contactId, b);
      move.run(b, contactId, PARK + a);
      this.#syncSeqField(contactId, a);
      this.#syncSeqField(contactId, b);
    });
  }

  /**
   * Stores a copy of the row at `seq` again, at `at` (default: after the head). Rows from `at`
   * on move up by one; the head grows by one. Returns the new row's seq.
   * @throws Error when there is no row at `seq` or `at` is past head + 1.
   */
  replay(contactId: string, seq: number, opts: { at?: number } = {}): number {
    return this.#tx(() => {
      const src = this.row(contactId, seq);
      return this.#insert(contactId, src.envelopeJson, opts.at, `${src.msgId}~replay`);
    });
  }

  /**
   * Stores an arbitrary envelope (JSON object, `seq` removed) at `at` (default: after the head),
   * moving later rows up. The columns come from its msgId, senderId, epoch and sentAt.
   * @throws Error when a column value is missing or the msgId column is taken.
   */
  insert(contactId: string, envelope: StoredJson, opts: { at?: number } = {}): number {
    return this.#tx(() => {
      const { seq: _seq, ...env } = envelope;
      return this.#insert(contactId, JSON.stringify(env), opts.at, undefined);
    });
  }

  /** Deletes every row after `seq` and sets the head to `seq`. Returns the rows deleted. */
  truncateAfter(contactId: string, seq: number): number {
    return this.#tx(() => {
      const n = this.#db.prepare('DELETE FROM messages WHERE contact_id = ? AND seq > ?').run(contactId, seq).changes;
      if (this.head(contactId) > seq) this.#setHead(contactId, seq);
      return n;
    });
  }

  /**
   * Rewrites the stored envelope at `seq` with `fn` (it gets the parsed JSON, may mutate and
   * return it). The msg_id, sender_id, epoch and sent_at columns follow the new JSON's fields
   * where those are present.
   * @throws Error when there is no row at `seq`.
   */
  rewriteEnvelope(contactId: string, seq: number, fn: (env: StoredJson) => StoredJson): void {
    this.#tx(() => {
      const row = this.row(contactId, seq);
      const env = fn(JSON.parse(row.envelopeJson) as StoredJson);
      this.#db
        .prepare('UPDATE messages SET envelope = ?, msg_id = ?, sender_id = ?, epoch = ?, sent_at = ? WHERE contact_id = ? AND seq = ?')
        .run(
          JSON.stringify(env),
          typeof env.msgId === 'string' && !row.msgId.includes('~replay') ? env.msgId : row.msgId,
          typeof env.senderId === 'string' ? env.senderId : row.senderId,
          typeof env.epoch === 'number' ? env.epoch : row.epoch,
          typeof env.sentAt === 'number' ? env.sentAt : row.sentAt,
          contactId,
          seq,
        );
    });
  }

  /** Closes the connection (checkpointing the WAL when it is the last one). */
  close(): void {
    this.#db.close();
  }

  #tx<T>(fn: () => T): T {
    return this.#db.transaction(fn).immediate();
  }

  #setHead(contactId: string, head: number): void {
    this.#db.prepare('UPDATE contacts SET head_seq = ? WHERE contact_id = ?').run(head, contactId);
  }

  /** Moves rows with seq >= from by `delta` (±1), in an order that never collides. */
  #shift(contactId: string, from: number, delta: 1 | -1): void {
    const seqs = this.#db
      .prepare<[string, number], { seq: number }>(`SELECT seq FROM messages WHERE contact_id = ? AND seq >= ? ORDER BY seq ${delta < 0 ? 'ASC' : 'DESC'}`)
      .all(contactId, from)
      .map((r) => r.seq);
    const move = this.#db.prepare('UPDATE messages SET seq = ? WHERE contact_id = ? AND seq = ?');
    for (const s of seqs) {
      move.run(s + delta, contactId, s);
      this.#syncSeqField(contactId, s + delta);
    }
  }

  /** A stored JSON that carries a `seq` of its own (a hand-made row) follows its row. */
  #syncSeqField(contactId: string, seq: number): void {
    const r = this.#db.prepare<[string, number], { envelope: string }>('SELECT envelope FROM messages WHERE contact_id = ? AND seq = ?').get(contactId, seq);
    if (!r) return;
    const env = JSON.parse(r.envelope) as StoredJson;
    if (env.seq === undefined || env.seq === seq) return;
    this.#db.prepare('UPDATE messages SET envelope = ? WHERE contact_id = ? AND seq = ?').run(JSON.stringify({ ...env, seq }), contactId, seq);
  }

  #insert(contactId: string, json: string, at: number | undefined, msgIdColumn: string | undefined): number {
    const env = JSON.parse(json) as StoredJson;
    const head = this.head(contactId);
    const seq = at ?? head + 1;
    if (!Number.isSafeInteger(seq) || seq < 1 || seq > head + 1) throw new RangeError(`messages-db: cannot insert at ${seq} (head ${head})`);
    const { msgId, senderId, epoch, sentAt } = env;
    if (typeof msgId !== 'string' || typeof senderId !== 'string' || typeof epoch !== 'number' || typeof sentAt !== 'number') {
      throw new Error('messages-db: the envelope needs msgId, senderId, epoch and sentAt');
    }
    let column = msgIdColumn ?? msgId;
    if (msgIdColumn !== undefined) {
      const taken = this.#db.prepare<[string, string], { n: number }>('SELECT count(*) AS n FROM messages WHERE contact_id = ? AND msg_id LIKE ?');
      column = `${msgIdColumn}${taken.get(contactId, `${msgIdColumn}%`)?.n ?? 0}`;
    }
    this.#shift(contactId, seq, 1);
    this.#db
      .prepare('INSERT INTO messages (contact_id, seq, msg_id, sender_id, epoch, sent_at, stored_at, envelope) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(contactId, seq, column, senderId, epoch, sentAt, Date.now(), json);
    this.#setHead(contactId, head + 1);
    return seq;
  }
}
