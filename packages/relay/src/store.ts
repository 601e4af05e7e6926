/**
 * Message store: the relay's durable, per-contact ordered log of sealed envelopes (DESIGN.md
 * "Envelope (what the relay stores)"). `MessageStore` is the contract every backend meets
 * (SQLite now, PostgreSQL later); `SqliteMessageStore` is the embedded default.
 *
 * Durability (docs/guarantees.md): the database runs in WAL mode. With `synchronous=NORMAL`
 * (the default) a committed transaction is written to the WAL before `appendBatch` returns, so
 * an acknowledged message (the relay acks only after commit) survives a crash of the process;
 * the WAL is fsynced at checkpoints, so a power loss or kernel crash may lose the last commits.
 * `synchronous: 'FULL'` fsyncs every commit, so an ack also survives a power loss, at the cost
 * of one fsync per group commit during which the event loop waits.
 *
 * The store never interprets the ciphertext: it keeps the envelope as JSON text and reads out
 * only the routing metadata (contact, sender, msgId, epoch, sentAt).
 */
import { accessSync, constants as fsConstants, existsSync, statSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import {
  DEFAULT_CONTACT_TTL_MS,
  LatchkeyError,
  decideAdmission,
  effectiveState,
  type ContactInfo,
  type ContactState,
  type ParticipantInfo,
  type ParticipantState,
  type Role,
  type SealedEnvelope,
  type StoredEnvelope,
} from '@latchkey/protocol';
import type { ContactPolicy, ContactStore, ListContactsOptions } from './contacts.ts';
import { overQuota, type Quota, type Usage } from './quota.ts';

/** Outcome of appending one envelope within a batch. */
export type AppendResult =
  | {
      ok: true;
      /** The envelope's per-contact sequence number (the original one for a duplicate). */
      seq: number;
      /** True when this msgId was already stored by the same sender with the same envelope. */
      duplicate: boolean;
      /** The stored envelope with its seq. */
      envelope: StoredEnvelope;
    }
  | {
      ok: false;
      /**
       * CONFLICT: the msgId is taken by another sender or by a different envelope.
       * CONTACT_CLOSED / CONTACT_EXPIRED: the contact takes no more messages.
       * FORBIDDEN: the sender left or was removed from the contact.
       * QUOTA_EXCEEDED: storing it would take the contact or the sender over the quota.
       */
      code: 'CONFLICT' | 'CONTACT_CLOSED' | 'CONTACT_EXPIRED' | 'FORBIDDEN' | 'QUOTA_EXCEEDED';
    };

/** One page of a contact's log. */
export interface HistoryPage {
  /** Envelopes with seq > since, in seq order. */
  envelopes: StoredEnvelope[];
  /** Highest seq stored for the contact (0: none). */
  head: number;
  /** True when more envelopes follow the last one returned. */
  more: boolean;
}

/** Counters a store exposes for monitoring and tests. */
export interface StoreStats {
  /** Write transactions committed (one per appendBatch that succeeded). */
  transactions: number;
  /** Envelopes newly stored (duplicates not counted). */
  appended: number;
}

/**
 * A durable, per-contact ordered log of sealed envelopes. Seqs are gap-free per contact and
 * start at 1. Implementations must make `appendBatch` all-or-nothing.
 */
export interface MessageStore {
  /**
   * Stores a batch of envelopes in ONE transaction, in order, and returns one result per input.
   * A duplicate (same contact, msgId, sender and envelope) returns the original seq; a msgId
   * reused by another sender or with another envelope yields `{ ok: false, code: 'CONFLICT' }`
   * without aborting the batch. With a `quota` (quota.ts), an envelope that would take its
   * contact or its sender over it yields `{ ok: false, code: 'QUOTA_EXCEEDED' }` and is not
   * stored; the check and the append are one transaction, and a duplicate is answered first.
   * @throws LatchkeyError UNAVAILABLE when the transaction could not be committed; then nothing
   *   of the batch is stored.
   */
  appendBatch(envelopes: readonly SealedEnvelope[], quota?: Quota): Promise<AppendResult[]>;
  /**
   * Highest seq stored for a contact (0 when none).
   * @throws LatchkeyError UNAVAILABLE when the store cannot be read.
   */
  head(contactId: string): Promise<number>;
  /**
   * Envelopes of a contact with seq > since, in order, at most `limit`.
   * @throws LatchkeyError UNAVAILABLE when the store cannot be read.
   */
  history(contactId: string, since: number, limit: number): Promise<HistoryPage>;
  /** Counters since the store was opened. */
  readonly stats: StoreStats;
  /** Closes the store; further calls fail with UNAVAILABLE. */
  close(): Promise<void>;
}

export interface SqliteStoreOptions {
  /** Database file path (created if missing). */
  path: string;
  /**
   * `NORMAL` (default): a committed message survives a process crash; the last transactions
   * before a power loss may be lost. `FULL`: it also survives a power loss (fsync per commit).
   */
  synchronous?: 'FULL' | 'NORMAL';
  /** Clock for `stored_at` (ms); defaults to Date.now. */
  now?: () => number;
  /** Lifetime of a contact first created by an append (ms; default 30 days). */
  contactTtlMs?: number;
  /**
   * `quick` (default): `PRAGMA quick_check` at open, a damaged file is refused (time grows with
   * the file's size: about a second per GiB). `off` skips it.
   */
  integrityCheck?: 'quick' | 'off';
  /** Called with the open connection after migrations (operations hooks and tests). */
  onOpen?: (db: Database.Database) => void;
}

/** Why the store refused to open, or why a write failed. */
export type StoreFailure = 'NEWER_SCHEMA' | 'NOT_ACCESSIBLE' | 'CORRUPT' | 'FULL' | 'READ_ONLY';

/**
 * A storage failure with the reason an operator needs (the code stays UNAVAILABLE on the wire,
 * where peers see only the fixed message of the code).
 */
export class StoreError extends LatchkeyError {
  readonly reason: StoreFailure;
  constructor(
    reason: StoreFailure,
    message: string,
    options?: { cause?: unknown; detail?: string },
  ) {
    super('UNAVAILABLE', message, options);
    this.reason = reason;
  }
}

/** Schema version this code writes; migrations below bring older files up to it. */
export const STORE_SCHEMA_VERSION = 4;

const MIGRATIONS: readonly string[] = [
  // v1: contacts with their head seq, and the per-contact log.
  `CREATE TABLE contacts (
     contact_id TEXT PRIMARY KEY,
     head_seq   INTEGER NOT NULL CHECK (head_seq >= 0),
     created_at INTEGER NOT NULL
   ) STRICT, WITHOUT ROWID;
   CREATE TABLE messages (
     contact_id TEXT NOT NULL REFERENCES contacts (contact_id),
     seq        INTEGER NOT NULL CHECK (seq >= 1),
     msg_id     TEXT NOT NULL,
     sender_id  TEXT NOT NULL,
     epoch      INTEGER NOT NULL,
     sent_at    INTEGER NOT NULL,
     stored_at  INTEGER NOT NULL,
     envelope   TEXT NOT NULL,
     PRIMARY KEY (contact_id, seq),
     UNIQUE (contact_id, msg_id)
   ) STRICT, WITHOUT ROWID;`,
  // v2: contact lifecycle (open -> closed -> expired) and membership.
  `ALTER TABLE contacts ADD COLUMN state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed', 'expired'));
   ALTER TABLE contacts ADD COLUMN closed_at INTEGER;
   ALTER TABLE contacts ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;
   UPDATE contacts SET expires_at = created_at + ${DEFAULT_CONTACT_TTL_MS};
   CREATE INDEX contacts_expiry ON contacts (state, expires_at);
   CREATE TABLE participants (
     contact_id     TEXT NOT NULL REFERENCES contacts (contact_id),
     participant_id TEXT NOT NULL,
     role           TEXT CHECK (role IN ('visitor', 'agent', 'supervisor')),
     state          TEXT NOT NULL CHECK (state IN ('active', 'left', 'kicked')),
     joined_at      INTEGER NOT NULL,
     left_at        INTEGER,
     PRIMARY KEY (contact_id, participant_id)
   ) STRICT, WITHOUT ROWID;`,
  // v3: messages in an ordinary rowid table with two unique indexes. Rows of 1-6 KB in a
  // WITHOUT ROWID table live inside the primary-key B-tree, which SQLite advises against for
  // large rows; appending cost ~5x more per message (docs/benchmarks.md "Known bottlenecks").
  `CREATE TABLE messages_v3 (
     contact_id TEXT NOT NULL REFERENCES contacts (contact_id),
     seq        INTEGER NOT NULL CHECK (seq >= 1),
     msg_id     TEXT NOT NULL,
     sender_id  TEXT NOT NULL,
     epoch      INTEGER NOT NULL,
     sent_at    INTEGER NOT NULL,
     stored_at  INTEGER NOT NULL,
     envelope   TEXT NOT NULL
   ) STRICT;
   INSERT INTO messages_v3 (contact_id, seq, msg_id, sender_id, epoch, sent_at, stored_at, envelope)
     SELECT contact_id, seq, msg_id, sender_id, epoch, sent_at, stored_at, envelope FROM messages ORDER BY contact_id, seq;
   DROP TABLE messages;
   ALTER TABLE messages_v3 RENAME TO messages;
   CREATE UNIQUE INDEX messages_seq ON messages (contact_id, seq);
   CREATE UNIQUE INDEX messages_msg_id ON messages (contact_id, msg_id);`,
  // v4: what each contact and each sender in it has stored, for the quotas (quota.ts).
  `ALTER TABLE contacts ADD COLUMN stored_messages INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE contacts ADD COLUMN stored_bytes INTEGER NOT NULL DEFAULT 0;
   CREATE TABLE sender_usage (
     contact_id TEXT NOT NULL REFERENCES contacts (contact_id),
     sender_id  TEXT NOT NULL,
     messages   INTEGER NOT NULL,
     bytes      INTEGER NOT NULL,
     PRIMARY KEY (contact_id, sender_id)
   ) STRICT, WITHOUT ROWID;
   UPDATE contacts SET
     stored_messages = (SELECT count(*) FROM messages m WHERE m.contact_id = contacts.contact_id),
     stored_bytes = (SELECT coalesce(sum(length(CAST(m.envelope AS BLOB))), 0) FROM messages m WHERE m.contact_id = contacts.contact_id);
   INSERT INTO sender_usage (contact_id, sender_id, messages, bytes)
     SELECT contact_id, sender_id, count(*), sum(length(CAST(envelope AS BLOB))) FROM messages GROUP BY contact_id, sender_id;`,
];

/**
 * The sealed envelope as canonical JSON (fixed key order), so that a retried send compares
 * equal byte for byte whatever key order the client used.
 */
function canonicalJson(e: SealedEnvelope): string {
  return JSON.stringify({
    v: e.v,
    alg: e.alg,
    contactId: e.contactId,
    epoch: e.epoch,
    senderId: e.senderId,
    msgId: e.msgId,
    sentAt: e.sentAt,
    ctr: e.ctr,
    prev: e.prev,
    seenSeq: e.seenSeq,
    seenHash: e.seenHash,
    nonce: e.nonce,
    ciphertext: e.ciphertext,
    sig: e.sig,
    cert: { body: e.cert.body, sig: e.cert.sig },
  });
}

function toStored(json: string, seq: number): StoredEnvelope {
  return { ...(JSON.parse(json) as SealedEnvelope), seq };
}

/**
 * Wraps a storage failure. The detail (logs only) keeps SQLite's own message, which names
 * tables and columns but no values; any other error contributes its name only, since its
 * message might quote stored content (e.g. a JSON parse error).
 */
function unavailable(err: unknown, what: string): LatchkeyError {
  if (LatchkeyError.is(err)) return err;
  if (
    err instanceof Database.SqliteError &&
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
  const detail =
    err instanceof Database.SqliteError
      ? `${err.code}: ${err.message}`
      : err instanceof Error
        ? err.name
        : typeof err;
  return new LatchkeyError('UNAVAILABLE', 'message store unavailable', {
    cause: err,
    detail: `${what}: ${detail}`,
  });
}

interface ContactRow {
  contact_id: string;
  state: ContactState;
  created_at: number;
  closed_at: number | null;
  expires_at: number;
}

interface ParticipantRow {
  participant_id: string;
  role: Role | null;
  state: ParticipantState;
  joined_at: number;
  left_at: number | null;
}

interface MessageRow {
  seq: number;
  sender_id: string;
  envelope: string;
}

/**
 * The SQLite (better-sqlite3) message store. Synchronous underneath; the async interface
 * only keeps the door open for networked backends.
 */
export class SqliteMessageStore implements MessageStore, ContactStore {
  readonly #db: Database.Database;
  readonly #now: () => number;
  readonly #contactTtlMs: number;
  readonly #stats: StoreStats = { transactions: 0, appended: 0 };
  readonly #stmt: {
    head: Database.Statement<[string], { head_seq: number }>;
    newContact: Database.Statement<[string, number, number]>;
    contact: Database.Statement<[string], ContactRow>;
    participants: Database.Statement<[string], ParticipantRow>;
    participant: Database.Statement<[string, string], ParticipantRow>;
    activeCount: Database.Statement<[string], { n: number }>;
    setHead: Database.Statement<[number, string]>;
    byMsgId: Database.Statement<[string, string], MessageRow>;
    insert: Database.Statement<[string, number, string, string, number, number, number, string]>;
    range: Database.Statement<[string, number, number], MessageRow>;
    contactUsage: Database.Statement<[string], Usage>;
    senderUsage: Database.Statement<[string, string], Usage>;
    addContactUsage: Database.Statement<[number, number, string]>;
    addSenderUsage: Database.Statement<[string, string, number, number]>;
  };
  readonly #appendTx: (
    envelopes: readonly SealedEnvelope[],
    quota: Quota | undefined,
  ) => { results: AppendResult[]; appended: number };
  #closed = false;

  /**
   * Opens (creating or migrating) the database at `opts.path`.
   * @throws LatchkeyError UNAVAILABLE when the file cannot be opened or has a newer schema.
   */
  constructor(opts: SqliteStoreOptions) {
    this.#now = opts.now ?? Date.now;
    this.#contactTtlMs = opts.contactTtlMs ?? DEFAULT_CONTACT_TTL_MS;
    if (!Number.isSafeInteger(this.#contactTtlMs) || this.#contactTtlMs <= 0) {
      throw new RangeError('contactTtlMs must be a positive integer');
    }
    // Checks that only read come first: a file this code must not use is left exactly as it was.
    checkAccess(opts.path);
    if (existsSync(opts.path)) probe(opts.path, opts.integrityCheck ?? 'quick');
    let db: Database.Database | undefined;
    try {
      db = new Database(opts.path);
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${opts.synchronous === 'FULL' ? 'FULL' : 'NORMAL'}`);
      db.pragma('foreign_keys = ON');
      db.pragma('busy_timeout = 5000');
      migrate(db);
      opts.onOpen?.(db);
    } catch (err) {
      db?.close();
      throw unavailable(err, 'open');
    }
    this.#db = db;
    this.#stmt = {
      head: db.prepare('SELECT head_seq FROM contacts WHERE contact_id = ?'),
      newContact: db.prepare(
        "INSERT INTO contacts (contact_id, head_seq, created_at, state, expires_at) VALUES (?, 0, ?, 'open', ?)",
      ),
      contact: db.prepare(
        'SELECT contact_id, state, created_at, closed_at, expires_at FROM contacts WHERE contact_id = ?',
      ),
      participants: db.prepare(
        'SELECT participant_id, role, state, joined_at, left_at FROM participants WHERE contact_id = ? ORDER BY joined_at, participant_id',
      ),
      participant: db.prepare(
        'SELECT participant_id, role, state, joined_at, left_at FROM participants WHERE contact_id = ? AND participant_id = ?',
      ),
      activeCount: db.prepare(
        "SELECT count(*) AS n FROM participants WHERE contact_id = ? AND state = 'active'",
      ),
      setHead: db.prepare('UPDATE contacts SET head_seq = ? WHERE contact_id = ?'),
      byMsgId: db.prepare(
        'SELECT seq, sender_id, envelope FROM messages WHERE contact_id = ? AND msg_id = ?',
      ),
      insert: db.prepare(
        `INSERT INTO messages (contact_id, seq, msg_id, sender_id, epoch, sent_at, stored_at, envelope)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      range: db.prepare(
        'SELECT seq, sender_id, envelope FROM messages WHERE contact_id = ? AND seq > ? ORDER BY seq LIMIT ?',
      ),
      contactUsage: db.prepare(
        'SELECT stored_messages AS messages, stored_bytes AS bytes FROM contacts WHERE contact_id = ?',
      ),
      senderUsage: db.prepare(
        'SELECT messages, bytes FROM sender_usage WHERE contact_id = ? AND sender_id = ?',
      ),
      addContactUsage: db.prepare(
        'UPDATE contacts SET stored_messages = stored_messages + ?, stored_bytes = stored_bytes + ? WHERE contact_id = ?',
      ),
      addSenderUsage: db.prepare(
        `INSERT INTO sender_usage (contact_id, sender_id, messages, bytes) VALUES (?, ?, ?, ?)
         ON CONFLICT (contact_id, sender_id) DO UPDATE SET messages = messages + excluded.messages, bytes = bytes + excluded.bytes`,
      ),
    };
    this.#appendTx = db.transaction(
      (envelopes: readonly SealedEnvelope[], quota: Quota | undefined) => {
        const now = this.#now();
        const heads = new Map<string, number>();
        // Contact and sender state do not change inside the transaction: read each once per batch.
        const contacts = new Map<string, ContactRow | undefined>();
        const senders = new Map<string, ParticipantRow | undefined>();
        // Usage as stored before the batch; `added` collects this batch's own appends on top.
        const contactUsage = new Map<string, Usage>();
        const senderUsage = new Map<string, Usage>();
        const added = new Map<string, { contactId: string; senderId: string | null } & Usage>();
        const results: AppendResult[] = [];
        let appended = 0;
        for (const e of envelopes) {
          const json = canonicalJson(e);
          const existing = this.#stmt.byMsgId.get(e.contactId, e.msgId);
          if (existing) {
            results.push(
              existing.sender_id === e.senderId && existing.envelope === json
                ? {
                    ok: true,
                    seq: existing.seq,
                    duplicate: true,
                    envelope: toStored(existing.envelope, existing.seq),
                  }
                : { ok: false, code: 'CONFLICT' },
            );
            continue;
          }
          let contact = contacts.get(e.contactId);
          if (!contacts.has(e.contactId)) {
            contact = this.#stmt.contact.get(e.contactId);
            contacts.set(e.contactId, contact);
          }
          if (contact) {
            const state = effectiveState(
              { state: contact.state, expiresAt: contact.expires_at },
              now,
            );
            if (state !== 'open') {
              results.push({
                ok: false,
                code: state === 'closed' ? 'CONTACT_CLOSED' : 'CONTACT_EXPIRED',
              });
              continue;
            }
            const senderKey = `${e.contactId}\u0000${e.senderId}`;
            let sender = senders.get(senderKey);
            if (!senders.has(senderKey)) {
              sender = this.#stmt.participant.get(e.contactId, e.senderId);
              senders.set(senderKey, sender);
            }
            if (sender && sender.state !== 'active') {
              results.push({ ok: false, code: 'FORBIDDEN' });
              continue;
            }
          }
          const bytes = Buffer.byteLength(json);
          let cu = contactUsage.get(e.contactId);
          if (!cu)
            contactUsage.set(
              e.contactId,
              (cu = { ...(this.#stmt.contactUsage.get(e.contactId) ?? { messages: 0, bytes: 0 }) }),
            );
          const usageKey = `${e.contactId}\u0000${e.senderId}`;
          let su = senderUsage.get(usageKey);
          if (!su)
            senderUsage.set(
              usageKey,
              (su = {
                ...(this.#stmt.senderUsage.get(e.contactId, e.senderId) ?? {
                  messages: 0,
                  bytes: 0,
                }),
              }),
            );
          if (quota && overQuota(quota, cu, su, bytes)) {
            results.push({ ok: false, code: 'QUOTA_EXCEEDED' });
            continue;
          }
          cu.messages++;
          cu.bytes += bytes;
          su.messages++;
          su.bytes += bytes;
          for (const [key, senderId] of [
            [e.contactId, null],
            [usageKey, e.senderId],
          ] as const) {
            const a = added.get(key) ?? { contactId: e.contactId, senderId, messages: 0, bytes: 0 };
            a.messages++;
            a.bytes += bytes;
            added.set(key, a);
          }
          let head = heads.get(e.contactId);
          if (head === undefined) {
            const row = this.#stmt.head.get(e.contactId);
            if (row) head = row.head_seq;
            else {
              this.#stmt.newContact.run(e.contactId, now, now + this.#contactTtlMs);
              head = 0;
            }
          }
          const seq = head + 1;
          this.#stmt.insert.run(
            e.contactId,
            seq,
            e.msgId,
            e.senderId,
            e.epoch,
            e.sentAt,
            now,
            json,
          );
          heads.set(e.contactId, seq);
          appended++;
          // The input was validated by the protocol schema (no extra fields): no need to re-parse.
          results.push({ ok: true, seq, duplicate: false, envelope: { ...e, seq } });
        }
        for (const [contactId, head] of heads) this.#stmt.setHead.run(head, contactId);
        for (const a of added.values()) {
          if (a.senderId === null) this.#stmt.addContactUsage.run(a.messages, a.bytes, a.contactId);
          else this.#stmt.addSenderUsage.run(a.contactId, a.senderId, a.messages, a.bytes);
        }
        return { results, appended };
      },
    );
  }

  /** Durability settings in effect on this connection (for start-up checks and tests). */
  get durability(): { journalMode: string; synchronous: 'OFF' | 'NORMAL' | 'FULL' | 'EXTRA' } {
    this.#open();
    const level = this.#db.pragma('synchronous', { simple: true }) as number;
    return {
      journalMode: String(this.#db.pragma('journal_mode', { simple: true })),
      synchronous: (['OFF', 'NORMAL', 'FULL', 'EXTRA'] as const)[level] ?? 'OFF',
    };
  }

  get stats(): StoreStats {
    return { ...this.#stats };
  }

  /** @throws LatchkeyError UNAVAILABLE when the transaction fails; nothing is stored then. */
  appendBatch(envelopes: readonly SealedEnvelope[], quota?: Quota): Promise<AppendResult[]> {
    try {
      this.#open();
      if (envelopes.length === 0) return Promise.resolve([]);
      const { results, appended } = this.#appendTx(envelopes, quota);
      this.#stats.transactions++;
      this.#stats.appended += appended;
      return Promise.resolve(results);
    } catch (err) {
      return Promise.reject(unavailable(err, 'append'));
    }
  }

  /** @throws LatchkeyError UNAVAILABLE when the store is closed or unreadable. */
  head(contactId: string): Promise<number> {
    try {
      this.#open();
      return Promise.resolve(this.#stmt.head.get(contactId)?.head_seq ?? 0);
    } catch (err) {
      return Promise.reject(unavailable(err, 'head'));
    }
  }

  /** @throws LatchkeyError UNAVAILABLE when the store is closed or unreadable. */
  history(contactId: string, since: number, limit: number): Promise<HistoryPage> {
    try {
      this.#open();
      if (!Number.isSafeInteger(since) || since < 0)
        throw new RangeError('since must be a seq cursor');
      if (!Number.isSafeInteger(limit) || limit < 1)
        throw new RangeError('limit must be a positive integer');
      // One read transaction so that head and rows come from the same snapshot.
      return Promise.resolve(
        this.#db.transaction(() => {
          const rows = this.#stmt.range.all(contactId, since, limit + 1);
          const more = rows.length > limit;
          if (more) rows.length = limit;
          const head = this.#stmt.head.get(contactId)?.head_seq ?? 0;
          return { envelopes: rows.map((r) => toStored(r.envelope, r.seq)), head, more };
        })(),
      );
    } catch (err) {
      if (err instanceof RangeError) return Promise.reject(err);
      return Promise.reject(unavailable(err, 'history'));
    }
  }

  // ---- ContactStore -----------------------------------------------------------------------

  /** @throws LatchkeyError CONTACT_EXPIRED, FORBIDDEN, CONTACT_FULL, UNAVAILABLE. */
  admit(
    p: { contactId: string; participantId: string; role: Role },
    now: number,
    policy: ContactPolicy,
  ): Promise<ContactInfo> {
    return this.#tx('admit', () => {
      this.#enter(p.contactId, p.participantId, p.role, now, policy);
      return this.#info(p.contactId, now);
    });
  }

  contact(contactId: string, now: number): Promise<ContactInfo | null> {
    return this.#tx(
      'contact',
      () => (this.#stmt.contact.get(contactId) ? this.#info(contactId, now) : null),
      false,
    );
  }

  listContacts(opts: ListContactsOptions, now: number): Promise<ContactInfo[]> {
    return this.#tx(
      'list',
      () => {
        const where: string[] = [];
        const args: (string | number)[] = [];
        if (opts.after !== undefined) {
          where.push('contact_id > ?');
          args.push(opts.after);
        }
        if (opts.state === 'expired') {
          where.push("(state = 'expired' OR expires_at <= ?)");
          args.push(now);
        } else if (opts.state !== undefined) {
          where.push('state = ? AND expires_at > ?');
          args.push(opts.state, now);
        }
        const sql = `SELECT contact_id FROM contacts ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY contact_id LIMIT ?`;
        const rows = this.#db
          .prepare<(string | number)[], { contact_id: string }>(sql)
          .all(...args, opts.limit);
        return rows.map((r) => this.#info(r.contact_id, now));
      },
      false,
    );
  }

  /** @throws LatchkeyError NOT_FOUND, CONTACT_EXPIRED. */
  closeContact(contactId: string, now: number): Promise<ContactInfo> {
    return this.#tx('close', () => {
      const c = this.#live(contactId, now);
      if (c.state === 'open') {
        this.#db
          .prepare("UPDATE contacts SET state = 'closed', closed_at = ? WHERE contact_id = ?")
          .run(now, contactId);
      }
      return this.#info(contactId, now);
    });
  }

  /** @throws LatchkeyError NOT_FOUND, CONTACT_EXPIRED. */
  setExpiry(contactId: string, expiresAt: number, now: number): Promise<ContactInfo> {
    return this.#tx('expiry', () => {
      this.#live(contactId, now);
      this.#db
        .prepare('UPDATE contacts SET expires_at = ? WHERE contact_id = ?')
        .run(expiresAt, contactId);
      return this.#info(contactId, now);
    });
  }

  /** @throws LatchkeyError NOT_FOUND, CONTACT_EXPIRED. */
  kick(contactId: string, participantId: string, now: number): Promise<ContactInfo> {
    return this.#tx('kick', () => {
      this.#ensure(contactId, now);
      const p = this.#stmt.participant.get(contactId, participantId);
      if (!p) {
        // Never seen here yet: a deny entry, so its first connection is refused too.
        this.#db
          .prepare(
            "INSERT INTO participants (contact_id, participant_id, role, state, joined_at, left_at) VALUES (?, ?, NULL, 'kicked', ?, ?)",
          )
          .run(contactId, participantId, now, now);
      } else if (p.state !== 'kicked')
        this.#setParticipant(contactId, participantId, 'kicked', now);
      return this.#info(contactId, now);
    });
  }

  /** @throws LatchkeyError CONTACT_EXPIRED, FORBIDDEN, CONTACT_FULL. */
  invite(
    contactId: string,
    participantId: string,
    role: Role,
    now: number,
    policy: ContactPolicy,
  ): Promise<ContactInfo> {
    return this.#tx('invite', () => {
      this.#enter(contactId, participantId, role, now, policy);
      return this.#info(contactId, now);
    });
  }

  /** @throws LatchkeyError NOT_FOUND, FORBIDDEN, CONTACT_EXPIRED. */
  transfer(contactId: string, from: string, to: string, now: number): Promise<ContactInfo> {
    return this.#tx('transfer', () => {
      this.#ensure(contactId, now);
      const leaving = this.#stmt.participant.get(contactId, from);
      if (leaving && leaving.role !== null && leaving.role !== 'agent') {
        throw new LatchkeyError('FORBIDDEN', 'only an agent hands a contact over');
      }
      if (!leaving) {
        // Not seen here yet: recorded as departed, so it cannot enter later.
        this.#db
          .prepare(
            "INSERT INTO participants (contact_id, participant_id, role, state, joined_at, left_at) VALUES (?, ?, 'agent', 'left', ?, ?)",
          )
          .run(contactId, from, now, now);
      } else if (leaving.state === 'active') this.#setParticipant(contactId, from, 'left', now);
      // The newcomer takes the leaver's seat, so the limit cannot refuse it.
      this.#enter(contactId, to, 'agent', now, {
        maxParticipants: Number.MAX_SAFE_INTEGER,
        contactTtlMs: this.#contactTtlMs,
      });
      return this.#info(contactId, now);
    });
  }

  expireDue(now: number): Promise<string[]> {
    return this.#tx('expire', () => {
      const rows = this.#db
        .prepare<[number], { contact_id: string }>(
          "SELECT contact_id FROM contacts WHERE state != 'expired' AND expires_at <= ?",
        )
        .all(now);
      const mark = this.#db.prepare("UPDATE contacts SET state = 'expired' WHERE contact_id = ?");
      for (const r of rows) mark.run(r.contact_id);
      return rows.map((r) => r.contact_id);
    });
  }

  /** Runs `fn` in a transaction (write: IMMEDIATE); storage failures become UNAVAILABLE. */
  #tx<T>(what: string, fn: () => T, write = true): Promise<T> {
    try {
      this.#open();
      const tx = this.#db.transaction(fn);
      return Promise.resolve(write ? tx.immediate() : tx());
    } catch (err) {
      return Promise.reject(unavailable(err, what));
    }
  }

  /** Creates the contact (open, default lifetime) when unknown; refuses an expired one. */
  #ensure(contactId: string, now: number): void {
    if (!this.#stmt.contact.get(contactId))
      this.#stmt.newContact.run(contactId, now, now + this.#contactTtlMs);
    else this.#live(contactId, now);
  }

  /** The contact row unless it is unknown or expired. */
  #live(contactId: string, now: number): ContactRow {
    const c = this.#stmt.contact.get(contactId);
    if (!c) throw new LatchkeyError('NOT_FOUND', 'no such contact');
    if (effectiveState({ state: c.state, expiresAt: c.expires_at }, now) === 'expired') {
      throw new LatchkeyError('CONTACT_EXPIRED', 'contact expired');
    }
    return c;
  }

  #enter(
    contactId: string,
    participantId: string,
    role: Role,
    now: number,
    policy: ContactPolicy,
  ): void {
    const c = this.#stmt.contact.get(contactId);
    const p = this.#stmt.participant.get(contactId, participantId);
    const decision = decideAdmission({
      contact: c ? { state: c.state, expiresAt: c.expires_at } : null,
      participant: p ? { role: p.role, state: p.state } : null,
      activeCount: this.#stmt.activeCount.get(contactId)?.n ?? 0,
      role,
      now,
      maxParticipants: policy.maxParticipants,
    });
    if (!decision.ok) throw new LatchkeyError(decision.code, decision.message);
    if (decision.createContact)
      this.#stmt.newContact.run(contactId, now, now + policy.contactTtlMs);
    if (decision.createParticipant) {
      this.#db
        .prepare(
          "INSERT INTO participants (contact_id, participant_id, role, state, joined_at, left_at) VALUES (?, ?, ?, 'active', ?, NULL)",
        )
        .run(contactId, participantId, role, now);
    }
  }

  #setParticipant(
    contactId: string,
    participantId: string,
    state: 'left' | 'kicked',
    now: number,
  ): void {
    this.#db
      .prepare(
        'UPDATE participants SET state = ?, left_at = ? WHERE contact_id = ? AND participant_id = ?',
      )
      .run(state, now, contactId, participantId);
  }

  #info(contactId: string, now: number): ContactInfo {
    const c = this.#stmt.contact.get(contactId);
    if (!c) throw new LatchkeyError('NOT_FOUND', 'no such contact');
    const participants: ParticipantInfo[] = this.#stmt.participants.all(contactId).map((r) => ({
      participantId: r.participant_id,
      role: r.role,
      state: r.state,
      joinedAt: r.joined_at,
      leftAt: r.left_at,
    }));
    return {
      contactId: c.contact_id,
      state: effectiveState({ state: c.state, expiresAt: c.expires_at }, now),
      createdAt: c.created_at,
      closedAt: c.closed_at,
      expiresAt: c.expires_at,
      participants,
    };
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#db.close();
    }
    return Promise.resolve();
  }

  #open(): void {
    if (this.#closed) throw new LatchkeyError('UNAVAILABLE', 'message store closed');
  }
}

/**
 * The directory (and the files, when present) must be readable and writable by this process.
 * @throws StoreError NOT_ACCESSIBLE
 */
function checkAccess(path: string): void {
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
function probe(path: string, integrity: 'quick' | 'off'): void {
  // A read-only connection to a WAL file still creates empty -wal/-shm files; a refused file
  // gets them removed again, so that it is left as it was found.
  const created = [`${path}-wal`, `${path}-shm`].filter((f) => !existsSync(f));
  let db: Database.Database | undefined;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > MIGRATIONS.length) {
      throw new StoreError(
        'NEWER_SCHEMA',
        `message store ${path} has schema version ${version}, newer than this relay knows (${MIGRATIONS.length}); ` +
          'run a newer relay or restore a backup; nothing was changed',
        { detail: `open: user_version ${version}` },
      );
    }
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
    const code = err instanceof Database.SqliteError ? err.code : 'ERROR';
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

/** Brings the schema up to STORE_SCHEMA_VERSION, one migration per user_version step. */
function migrate(db: Database.Database): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > MIGRATIONS.length) {
    throw new StoreError(
      'NEWER_SCHEMA',
      `database schema ${version} is newer than this relay (${MIGRATIONS.length})`,
    );
  }
  for (let v = version; v < MIGRATIONS.length; v++) {
    const sql = MIGRATIONS[v];
    if (sql === undefined) break;
    db.transaction(() => {
      db.exec(sql);
      db.pragma(`user_version = ${v + 1}`);
    }).immediate();
  }
}
