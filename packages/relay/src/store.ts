/**
 * The SQLite message store (`SqliteMessageStore`): the relay's embedded default, messages and
 * contacts in one file. The contract is message-store.ts (and contacts.ts); opening and the
 * schema are sqlite-open.ts and sqlite-schema.ts; what an append decides is append-plan.ts and
 * the membership rules are @latchkey/storage `Membership`, both shared with pg-store.ts.
 *
 * Durability (docs/guarantees.md): the database runs in WAL mode. With `synchronous=NORMAL`
 * (the default) a committed transaction is written to the WAL before `appendBatch` returns, so
 * an acknowledged message (the relay acks only after commit) survives a crash of the process;
 * the WAL is fsynced at checkpoints, so a power loss or kernel crash may lose the last commits.
 * `synchronous: 'FULL'` fsyncs the WAL after every commit and before the appends resolve, so an
 * ack also survives a power loss; the fsync runs on libuv's thread pool, not on the event loop,
 * and a message is not readable until it is on disk (wal-sync.ts).
 *
 * The store never interprets the ciphertext: it keeps the envelope as JSON text and reads out
 * only the routing metadata (contact, sender, msgId, epoch, sentAt).
 */
import type { ContactState, ParticipantState, SealedEnvelope } from '@latchkey/protocol';
import type { Flow, Sql } from '@latchkey/storage';
import { isSqliteError, runSqlite, type SqliteDatabase } from '@latchkey/storage/sqlite';
import { StoreBase } from './_store-base.ts';
import { planAppend, type AppendPlan, type AppendView } from './append-plan.ts';
import { toStored } from './envelope-json.ts';
import type { AppendResult, HistoryPage, MessageStore } from './message-store.ts';
import type { Quota, Usage } from './quota.ts';
import { openMessageDb, unavailable } from './sqlite-open.ts';
import { CHECKPOINT_PAGES, Checkpointer } from './checkpointer.ts';
import { WalSync, type SyncFile } from './wal-sync.ts';

export type { AppendResult, HistoryPage, MessageStore, StoreStats } from './message-store.ts';
export { StoreError, SchemaTooNewError, type StoreFailure } from '@latchkey/storage';
export { STORE_SCHEMA_VERSION } from './sqlite-schema.ts';

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
  onOpen?: (db: SqliteDatabase) => void;
  /** Flushes the WAL file under `FULL` (tests inject a slow or failing one). */
  syncFile?: SyncFile;
  /**
   * `worker` (default): WAL checkpoints run in a worker thread, off the event loop
   * (checkpointer.ts); `auto`: SQLite's automatic checkpoint inside the commits.
   */
  checkpoints?: 'worker' | 'auto';
}

/** Rolls back the fast attempt of an append (see the constructor). */
const NOT_ALL_FRESH = new Error('batch needs the checked plan');

interface HistoryRow {
  seq: number;
  envelope: string;
}

interface ContactRow {
  state: ContactState;
  expires_at: number;
  head_seq: number;
  stored_messages: number;
  stored_bytes: number;
}

/**
 * The SQLite (better-sqlite3) message and contact store. Synchronous underneath; the async
 * interface is the one every backend meets.
 */
export class SqliteMessageStore extends StoreBase implements MessageStore {
  readonly #db: SqliteDatabase;
  readonly #appendTx: (
    envelopes: readonly SealedEnvelope[],
    quota: Quota | undefined,
  ) => AppendPlan;
  readonly #head: (contactId: string) => number;
  readonly #range: (contactId: string, since: number, limit: number) => HistoryRow[];
  /** Under FULL: the WAL's fsync after each commit, off the event loop. */
  readonly #wal: WalSync | undefined;
  readonly #path: string;
  /** Bytes appended until the checkpoint worker starts (undefined: started, or not wanted). */
  #untilCheckpointer: number | undefined;
  #checkpointer: Checkpointer | undefined;

  /**
   * Opens (creating or migrating) the database at `opts.path`.
   * @throws LatchkeyError UNAVAILABLE (StoreError with the reason) when the file cannot be
   *   opened or has a newer schema; RangeError on a bad option.
   */
  constructor(opts: SqliteStoreOptions) {
    super(opts);
    // FULL is kept by WalSync: the connection itself commits without waiting for the disk.
    const db = (this.#db = openMessageDb({ ...opts, synchronous: 'NORMAL' }));
    this.#wal =
      opts.synchronous === 'FULL' ? new WalSync(`${opts.path}-wal`, opts.syncFile) : undefined;
    this.#path = opts.path;
    if ((opts.checkpoints ?? 'worker') === 'worker') {
      // Until the worker runs, the WAL may grow to half a checkpoint's worth.
      db.pragma('wal_autocheckpoint = 0');
      this.#untilCheckpointer = (CHECKPOINT_PAGES * 4096) / 2;
    }
    const view = sqliteView(db);
    const write = sqliteWriter(db);
    const append = (v: AppendView, allOk: boolean) =>
      db.transaction((envelopes: readonly SealedEnvelope[], quota?: Quota) => {
        const now = this.now();
        const plan = planAppend(envelopes, v, now, quota);
        if (allOk && plan.results.some((r) => !r.ok)) throw NOT_ALL_FRESH;
        write(plan, now, this.contactTtlMs);
        return plan;
      });
    // Fresh msgIds are the rule: the first attempt skips the per-message lookup of an earlier
    // envelope with the same msgId and lets UNIQUE (contact_id, msg_id) catch one. A batch
    // with such a msgId, or with any refusal (a refusal of a duplicate would have to be its
    // duplicate answer), is rolled back whole and planned again with the lookups.
    const fresh = append({ ...view, prior: () => undefined }, true);
    const checked = append(view, false);
    this.#appendTx = (envelopes, quota) => {
      try {
        return fresh(envelopes, quota);
      } catch (err) {
        const retry =
          err === NOT_ALL_FRESH || (isSqliteError(err) && err.code === 'SQLITE_CONSTRAINT_UNIQUE');
        if (!retry) throw err;
        return checked(envelopes, quota);
      }
    };
    const head = db.prepare<[string], { head_seq: number }>(
      'SELECT head_seq FROM contacts WHERE contact_id = ?',
    );
    this.#head = (contactId) => {
      const h = head.get(contactId)?.head_seq ?? 0;
      const cap = this.#wal?.cap(contactId);
      return cap === undefined ? h : Math.min(h, cap - 1);
    };
    const range = db.prepare<[string, number, number], HistoryRow>(
      'SELECT seq, envelope FROM messages WHERE contact_id = ? AND seq > ? ORDER BY seq LIMIT ?',
    );
    this.#range = (contactId, since, limit) => {
      const rows = range.all(contactId, since, limit);
      const cap = this.#wal?.cap(contactId);
      return cap === undefined ? rows : rows.filter((r) => r.seq < cap);
    };
  }

  /** The database file's path (the file store's directory defaults to it + `.files`). */
  get path(): string {
    return this.#path;
  }

  /** Blob metadata flows (files/meta.ts) in one transaction of this database. */
  runFileFlow<T>(what: string, flow: (sql: Sql) => Flow<T>, write: boolean): Promise<T> {
    return this.runFlow(`file ${what}`, flow, write);
  }

  /** Better-sqlite3 commits inside `appendBatch`'s call (see MessageStore). */
  readonly commitsOnCall = true;

  /** Durability settings in effect on this connection (for start-up checks and tests). */
  get durability(): { journalMode: string; synchronous: 'OFF' | 'NORMAL' | 'FULL' | 'EXTRA' } {
    this.assertOpen();
    const level = this.#db.pragma('synchronous', { simple: true }) as number;
    return {
      journalMode: String(this.#db.pragma('journal_mode', { simple: true })),
      // FULL: every commit's WAL frames are fsynced before it is acked or read (wal-sync.ts).
      synchronous: this.#wal
        ? 'FULL'
        : ((['OFF', 'NORMAL', 'FULL', 'EXTRA'] as const)[level] ?? 'OFF'),
    };
  }

  /** @throws LatchkeyError UNAVAILABLE when the transaction fails; nothing is stored then. */
  appendBatch(envelopes: readonly SealedEnvelope[], quota?: Quota): Promise<AppendResult[]> {
    try {
      this.assertOpen();
      if (envelopes.length === 0) return Promise.resolve([]);
      const plan = this.#appendTx(envelopes, quota);
      this.committed(plan.messages.length);
      if (this.#untilCheckpointer !== undefined) this.#countTowardsCheckpointer(plan);
      // Even a batch of duplicates waits: the originals it answers with may not be on disk yet.
      return this.#onDisk(
        plan.results,
        [...plan.contacts]
          .filter(([, c]) => c.messages > 0)
          .map(([id, c]) => [id, c.head - c.messages + 1]),
      );
    } catch (err) {
      return Promise.reject(unavailable(err, 'append'));
    }
  }

  /** @throws LatchkeyError UNAVAILABLE when the store is closed or unreadable. */
  head(contactId: string): Promise<number> {
    try {
      this.assertOpen();
      return Promise.resolve(this.#head(contactId));
    } catch (err) {
      return Promise.reject(unavailable(err, 'head'));
    }
  }

  /** @throws LatchkeyError UNAVAILABLE when the store is closed or unreadable. */
  history(contactId: string, since: number, limit: number): Promise<HistoryPage> {
    try {
      this.assertOpen();
      if (!Number.isSafeInteger(since) || since < 0)
        throw new RangeError('since must be a seq cursor');
      if (!Number.isSafeInteger(limit) || limit < 1)
        throw new RangeError('limit must be a positive integer');
      // One read transaction so that head and rows come from the same snapshot.
      return Promise.resolve(
        this.#db.transaction(() => {
          const rows = this.#range(contactId, since, limit + 1);
          const more = rows.length > limit;
          if (more) rows.length = limit;
          const head = this.#head(contactId);
          return { envelopes: rows.map((r) => toStored(r.envelope, r.seq)), head, more };
        })(),
      );
    } catch (err) {
      if (err instanceof RangeError) return Promise.reject(err);
      return Promise.reject(unavailable(err, 'history'));
    }
  }

  /** One transaction of the contact methods (write: IMMEDIATE); failures become UNAVAILABLE. */
  protected override runFlow<T>(
    what: string,
    flow: (sql: Sql) => Flow<T>,
    write: boolean,
  ): Promise<T> {
    try {
      this.assertOpen();
      const result = runSqlite(this.#db, flow, write);
      return write ? this.#onDisk(result, []) : Promise.resolve(result);
    } catch (err) {
      return Promise.reject(unavailable(err, what));
    }
  }

  async close(): Promise<void> {
    if (!this.markClosed()) return;
    await this.#checkpointer?.stop();
    this.#db.close();
  }

  /**
   * `value` once the commit just made is on disk: at once by default, after the WAL flush under
   * FULL (its messages, from each contact's first new seq, stay unreadable until then).
   * @throws LatchkeyError UNAVAILABLE (rejection) when the flush failed.
   */
  #onDisk<T>(value: T, firstSeqs: [contactId: string, firstSeq: number][]): Promise<T> {
    const wal = this.#wal;
    if (!wal) return Promise.resolve(value);
    return wal.durable(wal.committed(firstSeqs)).then(
      () => value,
      (err: unknown) => Promise.reject(unavailable(err, 'fsync')),
    );
  }

  /** Starts the checkpoint worker once enough was written for a checkpoint to matter. */
  #countTowardsCheckpointer(plan: AppendPlan): void {
    let left = this.#untilCheckpointer as number;
    for (const m of plan.messages) left -= m.bytes;
    if (left > 0) {
      this.#untilCheckpointer = left;
      return;
    }
    this.#untilCheckpointer = undefined;
    try {
      this.#checkpointer = new Checkpointer({
        path: this.#path,
        onFailure: () => this.#automaticCheckpoints(),
      });
    } catch {
      this.#automaticCheckpoints();
    }
  }

  /** Back to SQLite's automatic checkpoints (the worker could not run). */
  #automaticCheckpoints(): void {
    this.#checkpointer = undefined;
    if (!this.closed) this.#db.pragma(`wal_autocheckpoint = ${CHECKPOINT_PAGES}`);
  }
}

/** What planAppend reads, from prepared statements inside the append transaction. */
function sqliteView(db: SqliteDatabase): AppendView {
  const byMsgId = db.prepare<
    [string, string],
    { seq: number; sender_id: string; envelope: string }
  >('SELECT seq, sender_id, envelope FROM messages WHERE contact_id = ? AND msg_id = ?');
  const contact = db.prepare<[string], ContactRow>(
    'SELECT state, expires_at, head_seq, stored_messages, stored_bytes FROM contacts WHERE contact_id = ?',
  );
  const sender = db.prepare<[string, string], { state: ParticipantState }>(
    'SELECT state FROM participants WHERE contact_id = ? AND participant_id = ?',
  );
  const usage = db.prepare<[string, string], Usage>(
    'SELECT messages, bytes FROM sender_usage WHERE contact_id = ? AND sender_id = ?',
  );
  return {
    prior(contactId, msgId) {
      const r = byMsgId.get(contactId, msgId);
      return r && { seq: r.seq, senderId: r.sender_id, json: r.envelope };
    },
    contact(contactId) {
      const c = contact.get(contactId);
      return (
        c && {
          state: c.state,
          expiresAt: c.expires_at,
          head: c.head_seq,
          usage: { messages: c.stored_messages, bytes: c.stored_bytes },
        }
      );
    },
    senderState: (contactId, senderId) => sender.get(contactId, senderId)?.state,
    senderUsage: (contactId, senderId) => usage.get(contactId, senderId),
  };
}

/** Writes what planAppend decided, inside the same transaction. */
function sqliteWriter(db: SqliteDatabase): (plan: AppendPlan, now: number, ttl: number) => void {
  const newContact = db.prepare<[string, number, number]>(
    "INSERT INTO contacts (contact_id, head_seq, created_at, state, expires_at) VALUES (?, 0, ?, 'open', ?)",
  );
  const insert = db.prepare<[string, number, string, string, number, number, number, string]>(
    `INSERT INTO messages (contact_id, seq, msg_id, sender_id, epoch, sent_at, stored_at, envelope)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const setContact = db.prepare<[number, number, number, string]>(
    'UPDATE contacts SET head_seq = ?, stored_messages = stored_messages + ?, stored_bytes = stored_bytes + ? WHERE contact_id = ?',
  );
  const addSender = db.prepare<[string, string, number, number]>(
    `INSERT INTO sender_usage (contact_id, sender_id, messages, bytes) VALUES (?, ?, ?, ?)
     ON CONFLICT (contact_id, sender_id) DO UPDATE SET messages = messages + excluded.messages, bytes = bytes + excluded.bytes`,
  );
  return (plan, now, ttl) => {
    for (const [id, c] of plan.contacts) if (c.created) newContact.run(id, now, now + ttl);
    for (const m of plan.messages)
      insert.run(m.contactId, m.seq, m.msgId, m.senderId, m.epoch, m.sentAt, now, m.json);
    for (const [id, c] of plan.contacts) setContact.run(c.head, c.messages, c.bytes, id);
    for (const s of plan.senders) addSender.run(s.contactId, s.senderId, s.messages, s.bytes);
  };
}
