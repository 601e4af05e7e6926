/**
 * Edits a relay's `messages.db` as a hostile relay operator would (issue 13): delete a message
 * and renumber the rest, swap two seqs, replay a row under a new seq, cut the tail, rewrite a
 * stored envelope. Targets the SQLite store schema of packages/relay/src/store.ts, version 6
 * (v5 let participants have the role scanner and v6 added the file blobs, neither read here;
 * `messages` rowid table with unique (contact_id, seq) and (contact_id, msg_id) indexes;
 * `contacts.head_seq`; the quota counters `contacts.stored_messages`/`stored_bytes` and the
 * `sender_usage` table); any other version is refused, so that a schema change is noticed here.
 *
 * The relay keeps per contact a head seq and what the contact and each sender in it store
 * (messages, and bytes of the envelope text as UTF-8), and trusts them in its append
 * transaction (next seq, quota). Every edit here leaves them as the relay itself would have
 * written them for the rows that remain: the head is the highest seq, the counters are recounted
 * from the contact's rows in the edit's own transaction (a sender whose rows are all gone keeps
 * its `sender_usage` row, at zero). `problems()` checks exactly that, for tests.
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
 * Envelopes this tool writes (insert, rewrite) are stored in the relay's canonical key order
 * (store.ts `canonicalJson`), so they are byte for byte what the relay would have stored.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';

/** The store schema version (`PRAGMA user_version`) this tool understands. */
export const MESSAGES_DB_SCHEMA_VERSION = 6;

/** Columns this tool reads or writes, per table (checked at open). */
const COLUMNS: Readonly<Record<string, readonly string[]>> = {
  messages: [
    'contact_id',
    'seq',
    'msg_id',
    'sender_id',
    'epoch',
    'sent_at',
    'stored_at',
    'envelope',
  ],
  contacts: ['contact_id', 'head_seq', 'stored_messages', 'stored_bytes'],
  sender_usage: ['contact_id', 'sender_id', 'messages', 'bytes'],
};

/** The relay's canonical key order of a stored envelope (store.ts `canonicalJson`). */
const CANONICAL_ORDER = [
  'v',
  'alg',
  'contactId',
  'epoch',
  'senderId',
  'msgId',
  'sentAt',
  'ctr',
  'prev',
  'seenSeq',
  'seenHash',
  'nonce',
  'ciphertext',
  'sig',
  'cert',
];

/** `env` as JSON in the relay's key order (fields it does not know follow, as given). */
export function canonicalEnvelopeJson(env: StoredJson): string {
  const out: Record<string, unknown> = {};
  for (const k of CANONICAL_ORDER) if (k in env) out[k] = env[k];
  const cert = out.cert;
  if (typeof cert === 'object' && cert !== null && !Array.isArray(cert)) {
    const { body, sig, ...rest } = cert as Record<string, unknown>;
    out.cert = { body, sig, ...rest };
  }
  for (const [k, v] of Object.entries(env)) if (!(k in out)) out[k] = v;
  return JSON.stringify(out);
}

/** What a contact, or one sender in it, stores (the relay's quota counters). */
export interface Usage {
  messages: number;
  /** Bytes of the stored envelope text, UTF-8. */
  bytes: number;
}

/** A contact's quota counters. */
export interface ContactUsage extends Usage {
  /** Per sender id, the `sender_usage` rows of the contact. */
  senders: Record<string, Usage>;
}

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
    const file =
      existsSync(path) && statSync(path).isDirectory() ? join(path, 'relay', 'messages.db') : path;
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
      for (const [table, wanted] of Object.entries(COLUMNS)) {
        const cols = (db.pragma(`table_info(${table})`) as { name: string }[]).map((c) => c.name);
        const missing = wanted.filter((c) => !cols.includes(c));
        if (missing.length > 0)
          throw new Error(`messages-db: ${file} lacks ${table} columns ${missing.join(', ')}`);
      }
    } catch (err) {
      db.close();
      throw err;
    }
    return new MessagesDb(file, db);
  }

  /** Contacts with a row in `contacts`. */
  contacts(): string[] {
    return this.#db
      .prepare<[], { contact_id: string }>('SELECT contact_id FROM contacts ORDER BY contact_id')
      .all()
      .map((r) => r.contact_id);
  }

  /** The contact's head seq as the relay will report it (0: unknown contact). */
  head(contactId: string): number {
    return (
      this.#db
        .prepare<[string], { head_seq: number }>(
          'SELECT head_seq FROM contacts WHERE contact_id = ?',
        )
        .get(contactId)?.head_seq ?? 0
    );
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
    const r = this.#db
      .prepare<[string, number], RawRow>('SELECT * FROM messages WHERE contact_id = ? AND seq = ?')
      .get(contactId, seq);
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
      this.#recount(contactId);
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
      this.#recount(contactId);
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
      return this.#insert(contactId, canonicalEnvelopeJson(env), opts.at, undefined);
    });
  }

  /** Deletes every row after `seq` and sets the head to `seq`. Returns the rows deleted. */
  truncateAfter(contactId: string, seq: number): number {
    return this.#tx(() => {
      const n = this.#db
        .prepare('DELETE FROM messages WHERE contact_id = ? AND seq > ?')
        .run(contactId, seq).changes;
      if (this.head(contactId) > seq) this.#setHead(contactId, seq);
      this.#recount(contactId);
      return n;
    });
  }

  /**
   * Rewrites the stored envelope at `seq` with `fn` (it gets the parsed JSON, may mutate and
   * return it); stored in the relay's key order. The msg_id, sender_id, epoch and sent_at
   * columns follow the new JSON's fields where those are present, the counters its size and
   * sender.
   * @throws Error when there is no row at `seq`.
   */
  rewriteEnvelope(contactId: string, seq: number, fn: (env: StoredJson) => StoredJson): void {
    this.#tx(() => {
      const row = this.row(contactId, seq);
      const env = fn(JSON.parse(row.envelopeJson) as StoredJson);
      this.#db
        .prepare(
          'UPDATE messages SET envelope = ?, msg_id = ?, sender_id = ?, epoch = ?, sent_at = ? WHERE contact_id = ? AND seq = ?',
        )
        .run(
          canonicalEnvelopeJson(env),
          typeof env.msgId === 'string' && !row.msgId.includes('~replay') ? env.msgId : row.msgId,
          typeof env.senderId === 'string' ? env.senderId : row.senderId,
          typeof env.epoch === 'number' ? env.epoch : row.epoch,
          typeof env.sentAt === 'number' ? env.sentAt : row.sentAt,
          contactId,
          seq,
        );
      this.#recount(contactId);
    });
  }

  /** The contact's quota counters as stored (zeros and no senders for an unknown contact). */
  usage(contactId: string): ContactUsage {
    const c = this.#db
      .prepare<[string], Usage>(
        'SELECT stored_messages AS messages, stored_bytes AS bytes FROM contacts WHERE contact_id = ?',
      )
      .get(contactId);
    const senders: Record<string, Usage> = {};
    for (const r of this.#db
      .prepare<[string], Usage & { sender_id: string }>(
        'SELECT sender_id, messages, bytes FROM sender_usage WHERE contact_id = ? ORDER BY sender_id',
      )
      .all(contactId)) {
      senders[r.sender_id] = { messages: r.messages, bytes: r.bytes };
    }
    return { messages: c?.messages ?? 0, bytes: c?.bytes ?? 0, senders };
  }

  /**
   * What in the contact's stored state the relay would not have written itself: seqs not 1..head
   * without a gap, counters that differ from a count of the rows, columns that differ from their
   * envelope's fields. Empty when consistent.
   */
  problems(contactId: string): string[] {
    const out: string[] = [];
    const rows = this.rows(contactId);
    const head = this.head(contactId);
    rows.forEach((r, i) => {
      if (r.seq !== i + 1) out.push(`seq ${r.seq} at position ${i + 1}`);
      const e = r.envelope;
      if (e.senderId !== r.senderId || e.epoch !== r.epoch || e.sentAt !== r.sentAt)
        out.push(`seq ${r.seq}: columns differ from the envelope`);
      if (e.msgId !== r.msgId && !r.msgId.startsWith(`${e.msgId ?? ''}~replay`))
        out.push(`seq ${r.seq}: msg_id differs from the envelope`);
    });
    if (head !== (rows.at(-1)?.seq ?? 0))
      out.push(`head ${head}, last seq ${rows.at(-1)?.seq ?? 0}`);
    const want = this.#count(contactId);
    const got = this.usage(contactId);
    if (got.messages !== want.messages || got.bytes !== want.bytes) {
      out.push(`contact usage ${got.messages}/${got.bytes}, rows ${want.messages}/${want.bytes}`);
    }
    for (const id of new Set([...Object.keys(want.senders), ...Object.keys(got.senders)])) {
      const w = want.senders[id] ?? { messages: 0, bytes: 0 };
      const g = got.senders[id] ?? { messages: 0, bytes: 0 };
      if (w.messages !== g.messages || w.bytes !== g.bytes)
        out.push(`sender ${id} usage ${g.messages}/${g.bytes}, rows ${w.messages}/${w.bytes}`);
    }
    return out;
  }

  /** Closes the connection (checkpointing the WAL when it is the last one). */
  /** The database itself, for an edit this tool does not offer (the caller keeps it consistent or not). */
  raw(): Database.Database {
    return this.#db;
  }

  close(): void {
    this.#db.close();
  }

  #tx<T>(fn: () => T): T {
    return this.#db.transaction(fn).immediate();
  }

  /** The contact's usage counted from its rows, as the v4 migration counts it. */
  #count(contactId: string): ContactUsage {
    const senders: Record<string, Usage> = {};
    let messages = 0;
    let bytes = 0;
    for (const r of this.#db
      .prepare<[string], Usage & { sender_id: string }>(
        'SELECT sender_id, count(*) AS messages, sum(length(CAST(envelope AS BLOB))) AS bytes FROM messages WHERE contact_id = ? GROUP BY sender_id',
      )
      .all(contactId)) {
      senders[r.sender_id] = { messages: r.messages, bytes: r.bytes };
      messages += r.messages;
      bytes += r.bytes;
    }
    return { messages, bytes, senders };
  }

  /** Sets the contact's and its senders' counters to what its rows hold (inside an edit). */
  #recount(contactId: string): void {
    const want = this.#count(contactId);
    this.#db
      .prepare('UPDATE contacts SET stored_messages = ?, stored_bytes = ? WHERE contact_id = ?')
      .run(want.messages, want.bytes, contactId);
    // A sender whose rows are all gone keeps its row at zero, as if it had stored nothing.
    this.#db
      .prepare('UPDATE sender_usage SET messages = 0, bytes = 0 WHERE contact_id = ?')
      .run(contactId);
    const upsert = this.#db.prepare(
      `INSERT INTO sender_usage (contact_id, sender_id, messages, bytes) VALUES (?, ?, ?, ?)
       ON CONFLICT (contact_id, sender_id) DO UPDATE SET messages = excluded.messages, bytes = excluded.bytes`,
    );
    for (const [id, u] of Object.entries(want.senders))
      upsert.run(contactId, id, u.messages, u.bytes);
  }

  #setHead(contactId: string, head: number): void {
    this.#db.prepare('UPDATE contacts SET head_seq = ? WHERE contact_id = ?').run(head, contactId);
  }

  /** Moves rows with seq >= from by `delta` (±1), in an order that never collides. */
  #shift(contactId: string, from: number, delta: 1 | -1): void {
    const seqs = this.#db
      .prepare<[string, number], { seq: number }>(
        `SELECT seq FROM messages WHERE contact_id = ? AND seq >= ? ORDER BY seq ${delta < 0 ? 'ASC' : 'DESC'}`,
      )
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
    const r = this.#db
      .prepare<[string, number], { envelope: string }>(
        'SELECT envelope FROM messages WHERE contact_id = ? AND seq = ?',
      )
      .get(contactId, seq);
    if (!r) return;
    const env = JSON.parse(r.envelope) as StoredJson;
    if (env.seq === undefined || env.seq === seq) return;
    this.#db
      .prepare('UPDATE messages SET envelope = ? WHERE contact_id = ? AND seq = ?')
      .run(JSON.stringify({ ...env, seq }), contactId, seq);
  }

  #insert(
    contactId: string,
    json: string,
    at: number | undefined,
    msgIdColumn: string | undefined,
  ): number {
    const env = JSON.parse(json) as StoredJson;
    const head = this.head(contactId);
    const seq = at ?? head + 1;
    if (!Number.isSafeInteger(seq) || seq < 1 || seq > head + 1)
      throw new RangeError(`messages-db: cannot insert at ${seq} (head ${head})`);
    const { msgId, senderId, epoch, sentAt } = env;
    if (
      typeof msgId !== 'string' ||
      typeof senderId !== 'string' ||
      typeof epoch !== 'number' ||
      typeof sentAt !== 'number'
    ) {
      throw new Error('messages-db: the envelope needs msgId, senderId, epoch and sentAt');
    }
    let column = msgIdColumn ?? msgId;
    if (msgIdColumn !== undefined) {
      const taken = this.#db.prepare<[string, string], { n: number }>(
        'SELECT count(*) AS n FROM messages WHERE contact_id = ? AND msg_id LIKE ?',
      );
      column = `${msgIdColumn}${taken.get(contactId, `${msgIdColumn}%`)?.n ?? 0}`;
    }
    this.#shift(contactId, seq, 1);
    this.#db
      .prepare(
        'INSERT INTO messages (contact_id, seq, msg_id, sender_id, epoch, sent_at, stored_at, envelope) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      )
      .run(contactId, seq, column, senderId, epoch, sentAt, Date.now(), json);
    this.#setHead(contactId, head + 1);
    this.#recount(contactId);
    return seq;
  }
}
