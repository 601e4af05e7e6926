/**
 * PostgreSQL message and contact store (issue 9): the scale-out backend that several relays
 * share. Same contract and semantics as `SqliteMessageStore` (store.ts, contacts.ts); the store
 * contract tests run against both.
 *
 * Ordering across relays: every write that touches a contact first locks its `contacts` row
 * (`SELECT ... FOR UPDATE`, rows taken in contact id order so two batches cannot deadlock), and
 * the per-contact head seq lives on that row. Two relays appending to one contact therefore
 * serialise on the row lock: seqs stay gap-free and strictly ordered, and the msgId check that
 * follows the lock sees every earlier commit. A deadlock or serialisation failure (which the
 * lock order makes rare) is retried a few times before the caller sees UNAVAILABLE.
 *
 * Schema (pg-schema.ts): `schema_version` holds the version; migrations run at open, one
 * transaction each, under an advisory lock so that relays starting together migrate once
 * (@latchkey/storage `migratePostgres`). What an append decides is append-plan.ts and the
 * membership rules are @latchkey/storage `Membership`, both shared with store.ts. Loaded through
 * `@latchkey/relay/postgres`, so that a relay on SQLite never loads `pg`.
 * Durability is PostgreSQL's: a committed transaction is on the WAL (with the server's default
 * `synchronous_commit = on`) before `appendBatch` returns.
 */
import {
  LatchkeyError,
  type ContactState,
  type ParticipantState,
  type SealedEnvelope,
} from '@latchkey/protocol';
import type { Flow, Sql } from '@latchkey/storage';
import {
  isPgDatabaseError,
  migratePostgres,
  openPool,
  runPostgres,
  transaction,
  type PgClient,
  type PgPool,
} from '@latchkey/storage/postgres';
import { StoreBase, contactTtl } from './_store-base.ts';
import { planAppend, type AppendPlan, type AppendView } from './append-plan.ts';
import { toStored } from './envelope-json.ts';
import type { AppendResult, HistoryPage, MessageStore } from './message-store.ts';
import type { BlobStore } from './files/blob-store.ts';
import { PgBlobStore } from './files/pg-blob-store.ts';
import { MIGRATION_LOCK, MIGRATIONS } from './pg-schema.ts';
import type { Quota, Usage } from './quota.ts';

export { PG_SCHEMA_VERSION } from './pg-schema.ts';

export interface PgStoreOptions {
  /** `postgres://user:pass@host:port/db` (the messages database; keys live elsewhere). */
  url: string;
  /** Connections in the pool (default 10). */
  maxConnections?: number;
  /** Clock for `stored_at` (ms); defaults to Date.now. */
  now?: () => number;
  /** Lifetime of a contact first created by an append (ms; default 30 days). */
  contactTtlMs?: number;
}

/**
 * Wraps a storage failure. The detail (logs only) keeps the SQLSTATE and the constraint or
 * table name; PostgreSQL's message text and `detail` may quote values, so they stay out.
 */
function unavailable(err: unknown, what: string): LatchkeyError {
  if (LatchkeyError.is(err)) return err;
  const code = (err as { code?: unknown } | undefined)?.code;
  const detail = isPgDatabaseError(err)
    ? `${err.code ?? '?'}${err.constraint ? ` ${err.constraint}` : ''}${err.table ? ` on ${err.table}` : ''}`
    : err instanceof Error
      ? `${err.name}${code ? ` ${String(code)}` : ''}`
      : typeof err;
  return new LatchkeyError('UNAVAILABLE', 'message store unavailable', {
    cause: err,
    detail: `${what}: ${detail}`,
  });
}

interface ContactRow {
  contact_id: string;
  head_seq: number;
  stored_messages: number;
  stored_bytes: number;
  state: ContactState;
  expires_at: number;
}

/** The PostgreSQL (`pg`) message and contact store. Open it with `PgMessageStore.open`. */
export class PgMessageStore extends StoreBase implements MessageStore {
  readonly #pool: PgPool;

  private constructor(pool: PgPool, opts: PgStoreOptions) {
    super(opts);
    this.#pool = pool;
  }

  /**
   * Connects, creates or migrates the schema, and returns the store.
   * @throws RangeError on a bad option.
   * @throws LatchkeyError UNAVAILABLE when the database is unreachable or has a newer schema.
   */
  static async open(opts: PgStoreOptions): Promise<PgMessageStore> {
    contactTtl(opts.contactTtlMs);
    const pool = openPool({ url: opts.url, max: opts.maxConnections ?? 10 });
    try {
      await migratePostgres(pool, {
        lock: MIGRATION_LOCK,
        versionTable: 'schema_version',
        steps: MIGRATIONS,
        what: 'message database',
      });
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw unavailable(err, 'open');
    }
    return new PgMessageStore(pool, opts);
  }

  /** Blob metadata flows (files/meta.ts) in one transaction of this database. */
  runFileFlow<T>(what: string, flow: (sql: Sql) => Flow<T>): Promise<T> {
    return this.runFlow(`file ${what}`, flow);
  }

  /** A blob store whose parts live in this database (table `blob_parts`), on this pool. */
  blobStore(): BlobStore {
    return new PgBlobStore(this.#pool);
  }

  /** True when the database answers a trivial query (readiness). */
  async ping(): Promise<boolean> {
    if (this.closed) return false;
    try {
      await this.#pool.query('SELECT 1');
      return true;
    } catch {
      return false;
    }
  }

  /** @throws LatchkeyError UNAVAILABLE when the transaction fails; nothing is stored then. */
  async appendBatch(envelopes: readonly SealedEnvelope[], quota?: Quota): Promise<AppendResult[]> {
    this.assertOpen();
    if (envelopes.length === 0) return [];
    let plan: AppendPlan;
    try {
      plan = await transaction(this.#pool, (q) => this.#append(q, envelopes, quota));
    } catch (err) {
      throw unavailable(err, 'append');
    }
    this.committed(plan.messages.length);
    return plan.results;
  }

  /** Locks the batch's contacts, reads what the plan needs in a few queries, writes the plan. */
  async #append(
    q: PgClient,
    envelopes: readonly SealedEnvelope[],
    quota: Quota | undefined,
  ): Promise<AppendPlan> {
    const now = this.now();
    const ids = [...new Set(envelopes.map((e) => e.contactId))].sort();
    // Create missing contacts, then lock every contact row of the batch in id order.
    await q.query(
      `INSERT INTO contacts (contact_id, head_seq, created_at, state, expires_at)
       SELECT c, 0, $2, 'open', $3 FROM unnest($1::text[]) AS c ORDER BY c
       ON CONFLICT (contact_id) DO NOTHING`,
      [ids, now, now + this.contactTtlMs],
    );
    const locked = await q.query<ContactRow>(
      `SELECT contact_id, head_seq, stored_messages, stored_bytes, state, expires_at
       FROM contacts WHERE contact_id = ANY($1::text[]) ORDER BY contact_id FOR UPDATE`,
      [ids],
    );
    const contacts = new Map(locked.rows.map((r) => [r.contact_id, r]));
    const keyed = async <R>(sql: string, second: (e: SealedEnvelope) => string): Promise<R[]> =>
      (await q.query(sql, [envelopes.map((e) => e.contactId), envelopes.map(second)])).rows as R[];
    const join = (table: string, col: string, cols: string): string =>
      `SELECT t.contact_id, t.${col} AS k, ${cols} FROM ${table} t
       JOIN unnest($1::text[], $2::text[]) AS k(c, id) ON t.contact_id = k.c AND t.${col} = k.id`;
    // Usage read after the row locks: every earlier append to these contacts has committed.
    const [prior, senders, usage] = [
      await keyed<{
        contact_id: string;
        k: string;
        seq: number;
        sender_id: string;
        envelope: string;
      }>(join('messages', 'msg_id', 't.seq, t.sender_id, t.envelope'), (e) => e.msgId),
      await keyed<{ contact_id: string; k: string; state: ParticipantState }>(
        join('participants', 'participant_id', 't.state'),
        (e) => e.senderId,
      ),
      await keyed<{ contact_id: string; k: string } & Usage>(
        join('sender_usage', 'sender_id', 't.messages, t.bytes'),
        (e) => e.senderId,
      ),
    ];
    const byKey = <R extends { contact_id: string; k: string }>(rs: R[]): Map<string, R> =>
      new Map(rs.map((r) => [`${r.contact_id}\n${r.k}`, r]));
    const [priorBy, senderBy, usageBy] = [byKey(prior), byKey(senders), byKey(usage)];
    const view: AppendView = {
      prior(contactId, msgId) {
        const r = priorBy.get(`${contactId}\n${msgId}`);
        return r && { seq: r.seq, senderId: r.sender_id, json: r.envelope };
      },
      contact(contactId) {
        const c = contacts.get(contactId);
        if (!c) throw new Error('contact row missing after insert');
        return {
          state: c.state,
          expiresAt: c.expires_at,
          head: c.head_seq,
          usage: { messages: c.stored_messages, bytes: c.stored_bytes },
        };
      },
      senderState: (contactId, senderId) => senderBy.get(`${contactId}\n${senderId}`)?.state,
      senderUsage(contactId, senderId) {
        const u = usageBy.get(`${contactId}\n${senderId}`);
        return u && { messages: u.messages, bytes: u.bytes };
      },
    };
    const plan = planAppend(envelopes, view, now, quota);
    if (plan.messages.length > 0) await writePlan(q, plan, now);
    return plan;
  }

  /** @throws LatchkeyError UNAVAILABLE when the store is closed or unreadable. */
  async head(contactId: string): Promise<number> {
    this.assertOpen();
    try {
      const r = await this.#pool.query<{ head_seq: number }>(
        'SELECT head_seq FROM contacts WHERE contact_id = $1',
        [contactId],
      );
      return r.rows[0]?.head_seq ?? 0;
    } catch (err) {
      throw unavailable(err, 'head');
    }
  }

  /** @throws LatchkeyError UNAVAILABLE when the store is closed or unreadable. */
  async history(contactId: string, since: number, limit: number): Promise<HistoryPage> {
    this.assertOpen();
    if (!Number.isSafeInteger(since) || since < 0)
      throw new RangeError('since must be a seq cursor');
    if (!Number.isSafeInteger(limit) || limit < 1)
      throw new RangeError('limit must be a positive integer');
    // One statement: head and rows come from the same snapshot.
    let rows: { seq: number | null; envelope: string | null; head: number | null }[];
    try {
      rows = (
        await this.#pool.query<{
          seq: number | null;
          envelope: string | null;
          head: number | null;
        }>(
          `SELECT m.seq, m.envelope, h.head
           FROM (SELECT (SELECT head_seq FROM contacts WHERE contact_id = $1) AS head) h
           LEFT JOIN LATERAL (
             SELECT seq, envelope FROM messages WHERE contact_id = $1 AND seq > $2 ORDER BY seq LIMIT $3
           ) m ON true`,
          [contactId, since, limit + 1],
        )
      ).rows;
    } catch (err) {
      throw unavailable(err, 'history');
    }
    const head = rows[0]?.head ?? 0;
    const envelopes = rows.flatMap((x) =>
      x.seq === null || x.envelope === null ? [] : [toStored(x.envelope, x.seq)],
    );
    envelopes.sort((a, b) => a.seq - b.seq);
    const more = envelopes.length > limit;
    if (more) envelopes.length = limit;
    return { envelopes, head, more };
  }

  /**
   * One READ COMMITTED transaction of the contact methods, retried on deadlock or serialisation
   * failure. LatchkeyErrors thrown by the flow (refusals) roll back and pass through.
   */
  protected override async runFlow<T>(what: string, flow: (sql: Sql) => Flow<T>): Promise<T> {
    this.assertOpen();
    try {
      return await runPostgres(this.#pool, flow);
    } catch (err) {
      throw unavailable(err, what);
    }
  }

  close(): Promise<void> {
    return this.markClosed() ? this.#pool.end() : Promise.resolve();
  }
}

/** Writes what planAppend decided: messages, heads and usage, each in one statement. */
async function writePlan(q: PgClient, plan: AppendPlan, now: number): Promise<void> {
  const m = plan.messages;
  await q.query(
    `INSERT INTO messages (contact_id, seq, msg_id, sender_id, epoch, sent_at, stored_at, envelope)
     SELECT c, seq, id, s, epoch, sent, $8, json
     FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::int[], $6::bigint[], $7::text[])
       AS r(c, seq, id, s, epoch, sent, json)`,
    [
      m.map((r) => r.contactId),
      m.map((r) => r.seq),
      m.map((r) => r.msgId),
      m.map((r) => r.senderId),
      m.map((r) => r.epoch),
      m.map((r) => r.sentAt),
      m.map((r) => r.json),
      now,
    ],
  );
  const cs = [...plan.contacts];
  await q.query(
    `UPDATE contacts SET head_seq = h.seq, stored_messages = stored_messages + h.n, stored_bytes = stored_bytes + h.b
     FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) AS h(c, seq, n, b) WHERE contact_id = h.c`,
    [
      cs.map(([id]) => id),
      cs.map(([, c]) => c.head),
      cs.map(([, c]) => c.messages),
      cs.map(([, c]) => c.bytes),
    ],
  );
  // Per sender: this batch's appends added to the stored count (the row lock serialises us).
  const ss = plan.senders;
  await q.query(
    `INSERT INTO sender_usage (contact_id, sender_id, messages, bytes)
     SELECT c, s, n, b FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS a(c, s, n, b)
     ON CONFLICT (contact_id, sender_id)
     DO UPDATE SET messages = sender_usage.messages + EXCLUDED.messages, bytes = sender_usage.bytes + EXCLUDED.bytes`,
    [
      ss.map((a) => a.contactId),
      ss.map((a) => a.senderId),
      ss.map((a) => a.messages),
      ss.map((a) => a.bytes),
    ],
  );
}
