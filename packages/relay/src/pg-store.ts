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
 * Schema: `schema_version` holds the version; migrations run at open, one transaction each,
 * under an advisory lock so that relays starting together migrate once.
 * Durability is PostgreSQL's: a committed transaction is on the WAL (with the server's default
 * `synchronous_commit = on`) before `appendBatch` returns.
 */
import pg from 'pg';
import {
  DEFAULT_CONTACT_TTL_MS,
  LatchkeyError,
  decideAdmission,
  effectiveState,
  type ContactInfo,
  type ContactState,
  type ParticipantState,
  type Role,
  type SealedEnvelope,
  type StoredEnvelope,
} from '@latchkey/protocol';
import type { ContactPolicy, ContactStore, ListContactsOptions } from './contacts.ts';
import type { AppendResult, HistoryPage, MessageStore, StoreStats } from './store.ts';
import { overQuota, type Quota, type Usage } from './quota.ts';

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

/** Schema version this code writes. */
export const PG_SCHEMA_VERSION = 2;

const MIGRATIONS: readonly string[] = [
  `CREATE TABLE contacts (
     contact_id TEXT PRIMARY KEY,
     head_seq   BIGINT NOT NULL CHECK (head_seq >= 0),
     created_at BIGINT NOT NULL,
     state      TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed', 'expired')),
     closed_at  BIGINT,
     expires_at BIGINT NOT NULL
   );
   CREATE INDEX contacts_expiry ON contacts (state, expires_at);
   CREATE TABLE messages (
     contact_id TEXT NOT NULL REFERENCES contacts (contact_id),
     seq        BIGINT NOT NULL CHECK (seq >= 1),
     msg_id     TEXT NOT NULL,
     sender_id  TEXT NOT NULL,
     epoch      INTEGER NOT NULL,
     sent_at    BIGINT NOT NULL,
     stored_at  BIGINT NOT NULL,
     envelope   TEXT NOT NULL,
     PRIMARY KEY (contact_id, seq),
     UNIQUE (contact_id, msg_id)
   );
   CREATE TABLE participants (
     contact_id     TEXT NOT NULL REFERENCES contacts (contact_id),
     participant_id TEXT NOT NULL,
     role           TEXT CHECK (role IN ('visitor', 'agent', 'supervisor')),
     state          TEXT NOT NULL CHECK (state IN ('active', 'left', 'kicked')),
     joined_at      BIGINT NOT NULL,
     left_at        BIGINT,
     PRIMARY KEY (contact_id, participant_id)
   );`,
  // v2: what each contact and each sender in it has stored, for the quotas (quota.ts). Read
  // and written under the contact's row lock, like head_seq, so every relay sees one count.
  `ALTER TABLE contacts ADD COLUMN stored_messages BIGINT NOT NULL DEFAULT 0,
                        ADD COLUMN stored_bytes BIGINT NOT NULL DEFAULT 0;
   CREATE TABLE sender_usage (
     contact_id TEXT NOT NULL REFERENCES contacts (contact_id),
     sender_id  TEXT NOT NULL,
     messages   BIGINT NOT NULL,
     bytes      BIGINT NOT NULL,
     PRIMARY KEY (contact_id, sender_id)
   );
   UPDATE contacts c SET stored_messages = s.n, stored_bytes = s.b
     FROM (SELECT contact_id, count(*) AS n, sum(octet_length(envelope)) AS b FROM messages GROUP BY contact_id) s
     WHERE c.contact_id = s.contact_id;
   INSERT INTO sender_usage (contact_id, sender_id, messages, bytes)
     SELECT contact_id, sender_id, count(*), sum(octet_length(envelope)) FROM messages GROUP BY contact_id, sender_id;`,
];

/** Arbitrary constant naming the migration advisory lock ("latchkey" in ASCII, truncated). */
const MIGRATION_LOCK = 0x6c61746368;
/** SQLSTATEs worth retrying the whole transaction for: serialisation failure, deadlock. */
const RETRY_CODES = new Set(['40001', '40P01']);
const MAX_ATTEMPTS = 4;

/** BIGINT columns come back as numbers: every value we store (ms times, seqs) is a safe integer. */
const TYPES = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === 20
      ? (v: string) => Number(v)
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

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
 * Wraps a storage failure. The detail (logs only) keeps the SQLSTATE and the constraint or
 * table name; PostgreSQL's message text and `detail` may quote values, so they stay out.
 */
function unavailable(err: unknown, what: string): LatchkeyError {
  if (LatchkeyError.is(err)) return err;
  const e = err as Partial<pg.DatabaseError> | undefined;
  const detail =
    err instanceof pg.DatabaseError
      ? `${e?.code ?? '?'}${e?.constraint ? ` ${e.constraint}` : ''}${e?.table ? ` on ${e.table}` : ''}`
      : err instanceof Error
        ? `${err.name}${(err as { code?: unknown }).code ? ` ${String((err as { code?: unknown }).code)}` : ''}`
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

const CONTACT_COLS =
  'contact_id, head_seq, stored_messages, stored_bytes, state, created_at, closed_at, expires_at';
const PARTICIPANT_COLS = 'participant_id, role, state, joined_at, left_at';

type Q = pg.PoolClient;

/** The PostgreSQL (`pg`) message and contact store. Open it with `PgMessageStore.open`. */
export class PgMessageStore implements MessageStore, ContactStore {
  readonly #pool: pg.Pool;
  readonly #now: () => number;
  readonly #contactTtlMs: number;
  readonly #stats: StoreStats = { transactions: 0, appended: 0 };
  #closed = false;

  private constructor(pool: pg.Pool, opts: PgStoreOptions) {
    this.#pool = pool;
    this.#now = opts.now ?? Date.now;
    this.#contactTtlMs = opts.contactTtlMs ?? DEFAULT_CONTACT_TTL_MS;
  }

  /**
   * Connects, creates or migrates the schema, and returns the store.
   * @throws RangeError on a bad option.
   * @throws LatchkeyError UNAVAILABLE when the database is unreachable or has a newer schema.
   */
  static async open(opts: PgStoreOptions): Promise<PgMessageStore> {
    const ttl = opts.contactTtlMs ?? DEFAULT_CONTACT_TTL_MS;
    if (!Number.isSafeInteger(ttl) || ttl <= 0)
      throw new RangeError('contactTtlMs must be a positive integer');
    const pool = new pg.Pool({
      connectionString: opts.url,
      max: opts.maxConnections ?? 10,
      connectionTimeoutMillis: 10_000,
      types: TYPES,
    });
    // An idle client's network error must not crash the process; the next query reports it.
    pool.on('error', () => undefined);
    try {
      await migrate(pool);
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw unavailable(err, 'open');
    }
    return new PgMessageStore(pool, opts);
  }

  get stats(): StoreStats {
    return { ...this.#stats };
  }

  /** True when the database answers a trivial query (readiness). */
  async ping(): Promise<boolean> {
    if (this.#closed) return false;
    try {
      await this.#pool.query('SELECT 1');
      return true;
    } catch {
      return false;
    }
  }

  /** @throws LatchkeyError UNAVAILABLE when the transaction fails; nothing is stored then. */
  async appendBatch(envelopes: readonly SealedEnvelope[], quota?: Quota): Promise<AppendResult[]> {
    this.#open();
    if (envelopes.length === 0) return [];
    const { results, appended } = await this.#tx('append', (q) =>
      this.#append(q, envelopes, quota),
    );
    this.#stats.transactions++;
    this.#stats.appended += appended;
    return results;
  }

  async #append(
    q: Q,
    envelopes: readonly SealedEnvelope[],
    quota: Quota | undefined,
  ): Promise<{ results: AppendResult[]; appended: number }> {
    const now = this.#now();
    const ids = [...new Set(envelopes.map((e) => e.contactId))].sort();
    // Create missing contacts, then lock every contact row of the batch in id order.
    await q.query(
      `INSERT INTO contacts (contact_id, head_seq, created_at, state, expires_at)
       SELECT c, 0, $2, 'open', $3 FROM unnest($1::text[]) AS c ORDER BY c
       ON CONFLICT (contact_id) DO NOTHING`,
      [ids, now, now + this.#contactTtlMs],
    );
    const locked = await q.query<ContactRow>(
      `SELECT ${CONTACT_COLS} FROM contacts WHERE contact_id = ANY($1::text[]) ORDER BY contact_id FOR UPDATE`,
      [ids],
    );
    const contacts = new Map(locked.rows.map((r) => [r.contact_id, r]));
    const existing = await q.query<{
      contact_id: string;
      msg_id: string;
      seq: number;
      sender_id: string;
      envelope: string;
    }>(
      `SELECT m.contact_id, m.msg_id, m.seq, m.sender_id, m.envelope
       FROM messages m JOIN unnest($1::text[], $2::text[]) AS k(c, id) ON m.contact_id = k.c AND m.msg_id = k.id`,
      [envelopes.map((e) => e.contactId), envelopes.map((e) => e.msgId)],
    );
    const byMsgId = new Map<string, { seq: number; sender: string; json: string }>();
    for (const r of existing.rows)
      byMsgId.set(`${r.contact_id}\n${r.msg_id}`, {
        seq: r.seq,
        sender: r.sender_id,
        json: r.envelope,
      });
    const senders = await q.query<{
      contact_id: string;
      participant_id: string;
      state: ParticipantState;
    }>(
      `SELECT p.contact_id, p.participant_id, p.state
       FROM participants p JOIN unnest($1::text[], $2::text[]) AS k(c, id) ON p.contact_id = k.c AND p.participant_id = k.id`,
      [envelopes.map((e) => e.contactId), envelopes.map((e) => e.senderId)],
    );
    const senderState = new Map(
      senders.rows.map((r) => [`${r.contact_id}\n${r.participant_id}`, r.state]),
    );
    // Usage read after the row locks: every earlier append to these contacts has committed.
    const usage = await q.query<{
      contact_id: string;
      sender_id: string;
      messages: number;
      bytes: number;
    }>(
      `SELECT u.contact_id, u.sender_id, u.messages, u.bytes
       FROM sender_usage u JOIN unnest($1::text[], $2::text[]) AS k(c, id) ON u.contact_id = k.c AND u.sender_id = k.id`,
      [envelopes.map((e) => e.contactId), envelopes.map((e) => e.senderId)],
    );
    const senderUsage = new Map<string, Usage>(
      usage.rows.map((r) => [
        `${r.contact_id}\n${r.sender_id}`,
        { messages: r.messages, bytes: r.bytes },
      ]),
    );
    const contactUsage = new Map<string, Usage>(
      locked.rows.map((r) => [
        r.contact_id,
        { messages: r.stored_messages, bytes: r.stored_bytes },
      ]),
    );

    const heads = new Map<string, number>();
    const results: AppendResult[] = [];
    const rows: {
      c: string;
      seq: number;
      id: string;
      s: string;
      epoch: number;
      sent: number;
      json: string;
      bytes: number;
    }[] = [];
    for (const e of envelopes) {
      const json = canonicalJson(e);
      const key = `${e.contactId}\n${e.msgId}`;
      const prior = byMsgId.get(key);
      if (prior) {
        results.push(
          prior.sender === e.senderId && prior.json === json
            ? {
                ok: true,
                seq: prior.seq,
                duplicate: true,
                envelope: toStored(prior.json, prior.seq),
              }
            : { ok: false, code: 'CONFLICT' },
        );
        continue;
      }
      const contact = contacts.get(e.contactId);
      if (!contact) throw new Error('contact row missing after insert');
      const state = effectiveState({ state: contact.state, expiresAt: contact.expires_at }, now);
      if (state !== 'open') {
        results.push({
          ok: false,
          code: state === 'closed' ? 'CONTACT_CLOSED' : 'CONTACT_EXPIRED',
        });
        continue;
      }
      const sender = senderState.get(`${e.contactId}\n${e.senderId}`);
      if (sender !== undefined && sender !== 'active') {
        results.push({ ok: false, code: 'FORBIDDEN' });
        continue;
      }
      const bytes = Buffer.byteLength(json);
      const cu = contactUsage.get(e.contactId) ?? { messages: 0, bytes: 0 };
      const usageKey = `${e.contactId}\n${e.senderId}`;
      const su = senderUsage.get(usageKey) ?? { messages: 0, bytes: 0 };
      if (quota && overQuota(quota, cu, su, bytes)) {
        results.push({ ok: false, code: 'QUOTA_EXCEEDED' });
        continue;
      }
      contactUsage.set(e.contactId, { messages: cu.messages + 1, bytes: cu.bytes + bytes });
      senderUsage.set(usageKey, { messages: su.messages + 1, bytes: su.bytes + bytes });
      const seq = (heads.get(e.contactId) ?? contact.head_seq) + 1;
      heads.set(e.contactId, seq);
      byMsgId.set(key, { seq, sender: e.senderId, json });
      rows.push({
        c: e.contactId,
        seq,
        id: e.msgId,
        s: e.senderId,
        epoch: e.epoch,
        sent: e.sentAt,
        json,
        bytes,
      });
      results.push({ ok: true, seq, duplicate: false, envelope: toStored(json, seq) });
    }
    if (rows.length > 0) {
      await q.query(
        `INSERT INTO messages (contact_id, seq, msg_id, sender_id, epoch, sent_at, stored_at, envelope)
         SELECT c, seq, id, s, epoch, sent, $8, json
         FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::int[], $6::bigint[], $7::text[])
           AS r(c, seq, id, s, epoch, sent, json)`,
        [
          rows.map((r) => r.c),
          rows.map((r) => r.seq),
          rows.map((r) => r.id),
          rows.map((r) => r.s),
          rows.map((r) => r.epoch),
          rows.map((r) => r.sent),
          rows.map((r) => r.json),
          now,
        ],
      );
      const touched = [...heads.keys()];
      await q.query(
        `UPDATE contacts SET head_seq = h.seq, stored_messages = h.n, stored_bytes = h.b
         FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) AS h(c, seq, n, b) WHERE contact_id = h.c`,
        [
          touched,
          [...heads.values()],
          touched.map((c) => contactUsage.get(c)?.messages ?? 0),
          touched.map((c) => contactUsage.get(c)?.bytes ?? 0),
        ],
      );
      // Per sender: this batch's appends added to the stored count (the row lock serialises us).
      const perSender = new Map<string, { c: string; s: string; n: number; b: number }>();
      for (const r of rows) {
        const k = `${r.c}\n${r.s}`;
        const a = perSender.get(k) ?? { c: r.c, s: r.s, n: 0, b: 0 };
        a.n++;
        a.b += r.bytes;
        perSender.set(k, a);
      }
      const adds = [...perSender.values()];
      await q.query(
        `INSERT INTO sender_usage (contact_id, sender_id, messages, bytes)
         SELECT c, s, n, b FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS a(c, s, n, b)
         ON CONFLICT (contact_id, sender_id)
         DO UPDATE SET messages = sender_usage.messages + EXCLUDED.messages, bytes = sender_usage.bytes + EXCLUDED.bytes`,
        [adds.map((a) => a.c), adds.map((a) => a.s), adds.map((a) => a.n), adds.map((a) => a.b)],
      );
    }
    return { results, appended: rows.length };
  }

  /** @throws LatchkeyError UNAVAILABLE when the store is closed or unreadable. */
  async head(contactId: string): Promise<number> {
    this.#open();
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
    this.#open();
    if (!Number.isSafeInteger(since) || since < 0)
      throw new RangeError('since must be a seq cursor');
    if (!Number.isSafeInteger(limit) || limit < 1)
      throw new RangeError('limit must be a positive integer');
    // One statement: head and rows come from the same snapshot.
    const r = await this.#query<{
      seq: number | null;
      envelope: string | null;
      head: number | null;
    }>(
      'history',
      `SELECT m.seq, m.envelope, h.head
       FROM (SELECT (SELECT head_seq FROM contacts WHERE contact_id = $1) AS head) h
       LEFT JOIN LATERAL (
         SELECT seq, envelope FROM messages WHERE contact_id = $1 AND seq > $2 ORDER BY seq LIMIT $3
       ) m ON true`,
      [contactId, since, limit + 1],
    );
    const head = r.rows[0]?.head ?? 0;
    const envelopes = r.rows.flatMap((x) =>
      x.seq === null || x.envelope === null ? [] : [toStored(x.envelope, x.seq)],
    );
    envelopes.sort((a, b) => a.seq - b.seq);
    const more = envelopes.length > limit;
    if (more) envelopes.length = limit;
    return { envelopes, head, more };
  }

  // ---- ContactStore -----------------------------------------------------------------------

  /** @throws LatchkeyError CONTACT_EXPIRED, FORBIDDEN, CONTACT_FULL, UNAVAILABLE. */
  admit(
    p: { contactId: string; participantId: string; role: Role },
    now: number,
    policy: ContactPolicy,
  ): Promise<ContactInfo> {
    return this.#tx('admit', async (q) => {
      await this.#enter(q, p.contactId, p.participantId, p.role, now, policy);
      return this.#info(q, p.contactId, now);
    });
  }

  contact(contactId: string, now: number): Promise<ContactInfo | null> {
    return this.#tx('contact', (q) => this.#info(q, contactId, now, true));
  }

  listContacts(opts: ListContactsOptions, now: number): Promise<ContactInfo[]> {
    return this.#tx('list', async (q) => {
      const where: string[] = [];
      const args: (string | number)[] = [];
      const arg = (v: string | number): string => `$${args.push(v)}`;
      if (opts.after !== undefined) where.push(`contact_id > ${arg(opts.after)}`);
      if (opts.state === 'expired') where.push(`(state = 'expired' OR expires_at <= ${arg(now)})`);
      else if (opts.state !== undefined)
        where.push(`state = ${arg(opts.state)} AND expires_at > ${arg(now)}`);
      const sql = `SELECT contact_id FROM contacts ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY contact_id LIMIT ${arg(opts.limit)}`;
      const rows = (await q.query<{ contact_id: string }>(sql, args)).rows;
      const out: ContactInfo[] = [];
      for (const r of rows) {
        const info = await this.#info(q, r.contact_id, now, true);
        if (info) out.push(info);
      }
      return out;
    });
  }

  /** @throws LatchkeyError NOT_FOUND, CONTACT_EXPIRED. */
  closeContact(contactId: string, now: number): Promise<ContactInfo> {
    return this.#tx('close', async (q) => {
      const c = await this.#live(q, contactId, now);
      if (c.state === 'open') {
        await q.query(
          "UPDATE contacts SET state = 'closed', closed_at = $1 WHERE contact_id = $2",
          [now, contactId],
        );
      }
      return this.#info(q, contactId, now);
    });
  }

  /** @throws LatchkeyError NOT_FOUND, CONTACT_EXPIRED. */
  setExpiry(contactId: string, expiresAt: number, now: number): Promise<ContactInfo> {
    return this.#tx('expiry', async (q) => {
      await this.#live(q, contactId, now);
      await q.query('UPDATE contacts SET expires_at = $1 WHERE contact_id = $2', [
        expiresAt,
        contactId,
      ]);
      return this.#info(q, contactId, now);
    });
  }

  /** @throws LatchkeyError NOT_FOUND, CONTACT_EXPIRED. */
  kick(contactId: string, participantId: string, now: number): Promise<ContactInfo> {
    return this.#tx('kick', async (q) => {
      await this.#ensure(q, contactId, now);
      const p = await this.#participant(q, contactId, participantId);
      if (!p) {
        // Never seen here yet: a deny entry, so its first connection is refused too.
        await q.query(
          `INSERT INTO participants (contact_id, participant_id, role, state, joined_at, left_at) VALUES ($1, $2, NULL, 'kicked', $3, $3)`,
          [contactId, participantId, now],
        );
      } else if (p.state !== 'kicked')
        await this.#setParticipant(q, contactId, participantId, 'kicked', now);
      return this.#info(q, contactId, now);
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
    return this.#tx('invite', async (q) => {
      await this.#enter(q, contactId, participantId, role, now, policy);
      return this.#info(q, contactId, now);
    });
  }

  /** @throws LatchkeyError NOT_FOUND, FORBIDDEN, CONTACT_EXPIRED. */
  transfer(contactId: string, from: string, to: string, now: number): Promise<ContactInfo> {
    return this.#tx('transfer', async (q) => {
      await this.#ensure(q, contactId, now);
      const leaving = await this.#participant(q, contactId, from);
      if (leaving && leaving.role !== null && leaving.role !== 'agent') {
        throw new LatchkeyError('FORBIDDEN', 'only an agent hands a contact over');
      }
      if (!leaving) {
        await q.query(
          `INSERT INTO participants (contact_id, participant_id, role, state, joined_at, left_at) VALUES ($1, $2, 'agent', 'left', $3, $3)`,
          [contactId, from, now],
        );
      } else if (leaving.state === 'active')
        await this.#setParticipant(q, contactId, from, 'left', now);
      // The newcomer takes the leaver's seat, so the limit cannot refuse it.
      await this.#enter(q, contactId, to, 'agent', now, {
        maxParticipants: Number.MAX_SAFE_INTEGER,
        contactTtlMs: this.#contactTtlMs,
      });
      return this.#info(q, contactId, now);
    });
  }

  expireDue(now: number): Promise<string[]> {
    return this.#tx('expire', async (q) => {
      const r = await q.query<{ contact_id: string }>(
        `UPDATE contacts SET state = 'expired' WHERE contact_id IN (
           SELECT contact_id FROM contacts WHERE state != 'expired' AND expires_at <= $1 ORDER BY contact_id FOR UPDATE SKIP LOCKED
         ) RETURNING contact_id`,
        [now],
      );
      return r.rows.map((x) => x.contact_id).sort();
    });
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    return this.#pool.end();
  }

  // ---- internals ---------------------------------------------------------------------------

  #open(): void {
    if (this.#closed) throw new LatchkeyError('UNAVAILABLE', 'message store closed');
  }

  async #query<R extends pg.QueryResultRow>(
    what: string,
    sql: string,
    args: unknown[],
  ): Promise<pg.QueryResult<R>> {
    try {
      return await this.#pool.query<R>(sql, args);
    } catch (err) {
      throw unavailable(err, what);
    }
  }

  /**
   * Runs `fn` in a READ COMMITTED transaction on one pooled connection, retrying on deadlock or
   * serialisation failure. LatchkeyErrors thrown by `fn` (refusals) roll back and pass through.
   */
  async #tx<T>(what: string, fn: (q: Q) => Promise<T>): Promise<T> {
    this.#open();
    for (let attempt = 1; ; attempt++) {
      let client: pg.PoolClient;
      try {
        client = await this.#pool.connect();
      } catch (err) {
        throw unavailable(err, what);
      }
      let broken = false;
      try {
        await client.query('BEGIN');
        const out = await fn(client);
        await client.query('COMMIT');
        return out;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {
          broken = true;
        });
        const code = (err as { code?: unknown }).code;
        if (typeof code === 'string' && RETRY_CODES.has(code) && attempt < MAX_ATTEMPTS) continue;
        throw unavailable(err, what);
      } finally {
        client.release(broken);
      }
    }
  }

  async #contactRow(q: Q, contactId: string, lock: boolean): Promise<ContactRow | undefined> {
    const r = await q.query<ContactRow>(
      `SELECT ${CONTACT_COLS} FROM contacts WHERE contact_id = $1${lock ? ' FOR UPDATE' : ''}`,
      [contactId],
    );
    return r.rows[0];
  }

  async #participant(
    q: Q,
    contactId: string,
    participantId: string,
  ): Promise<ParticipantRow | undefined> {
    const r = await q.query<ParticipantRow>(
      `SELECT ${PARTICIPANT_COLS} FROM participants WHERE contact_id = $1 AND participant_id = $2`,
      [contactId, participantId],
    );
    return r.rows[0];
  }

  /** Creates the contact (open, default lifetime) when unknown and locks it; refuses an expired one. */
  async #ensure(q: Q, contactId: string, now: number): Promise<ContactRow> {
    await q.query(
      `INSERT INTO contacts (contact_id, head_seq, created_at, state, expires_at) VALUES ($1, 0, $2, 'open', $3)
       ON CONFLICT (contact_id) DO NOTHING`,
      [contactId, now, now + this.#contactTtlMs],
    );
    return this.#live(q, contactId, now);
  }

  /** The locked contact row unless it is unknown or expired. */
  async #live(q: Q, contactId: string, now: number): Promise<ContactRow> {
    const c = await this.#contactRow(q, contactId, true);
    if (!c) throw new LatchkeyError('NOT_FOUND', 'no such contact');
    if (effectiveState({ state: c.state, expiresAt: c.expires_at }, now) === 'expired') {
      throw new LatchkeyError('CONTACT_EXPIRED', 'contact expired');
    }
    return c;
  }

  async #enter(
    q: Q,
    contactId: string,
    participantId: string,
    role: Role,
    now: number,
    policy: ContactPolicy,
  ): Promise<void> {
    // Lock the contact (so that the participant count cannot race another relay's admission).
    const c = await this.#contactRow(q, contactId, true);
    const p = await this.#participant(q, contactId, participantId);
    const count = await q.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM participants WHERE contact_id = $1 AND state = 'active'",
      [contactId],
    );
    const decision = decideAdmission({
      contact: c ? { state: c.state, expiresAt: c.expires_at } : null,
      participant: p ? { role: p.role, state: p.state } : null,
      activeCount: count.rows[0]?.n ?? 0,
      role,
      now,
      maxParticipants: policy.maxParticipants,
    });
    if (!decision.ok) throw new LatchkeyError(decision.code, decision.message);
    if (decision.createContact) {
      const r = await q.query(
        `INSERT INTO contacts (contact_id, head_seq, created_at, state, expires_at) VALUES ($1, 0, $2, 'open', $3)
         ON CONFLICT (contact_id) DO NOTHING`,
        [contactId, now, now + policy.contactTtlMs],
      );
      // Another relay created it meanwhile: decide again against its row, now locked.
      if (r.rowCount === 0) return this.#enter(q, contactId, participantId, role, now, policy);
    }
    if (decision.createParticipant) {
      await q.query(
        `INSERT INTO participants (contact_id, participant_id, role, state, joined_at, left_at) VALUES ($1, $2, $3, 'active', $4, NULL)`,
        [contactId, participantId, role, now],
      );
    }
  }

  async #setParticipant(
    q: Q,
    contactId: string,
    participantId: string,
    state: 'left' | 'kicked',
    now: number,
  ): Promise<void> {
    await q.query(
      'UPDATE participants SET state = $1, left_at = $2 WHERE contact_id = $3 AND participant_id = $4',
      [state, now, contactId, participantId],
    );
  }

  #info(q: Q, contactId: string, now: number): Promise<ContactInfo>;
  #info(q: Q, contactId: string, now: number, orNull: true): Promise<ContactInfo | null>;
  async #info(q: Q, contactId: string, now: number, orNull = false): Promise<ContactInfo | null> {
    const c = await this.#contactRow(q, contactId, false);
    if (!c) {
      if (orNull) return null;
      throw new LatchkeyError('NOT_FOUND', 'no such contact');
    }
    const ps = await q.query<ParticipantRow>(
      `SELECT ${PARTICIPANT_COLS} FROM participants WHERE contact_id = $1 ORDER BY joined_at, participant_id`,
      [contactId],
    );
    return {
      contactId: c.contact_id,
      state: effectiveState({ state: c.state, expiresAt: c.expires_at }, now),
      createdAt: c.created_at,
      closedAt: c.closed_at,
      expiresAt: c.expires_at,
      participants: ps.rows.map((r) => ({
        participantId: r.participant_id,
        role: r.role,
        state: r.state,
        joinedAt: r.joined_at,
        leftAt: r.left_at,
      })),
    };
  }
}

/** Brings the schema up to PG_SCHEMA_VERSION under an advisory lock, one transaction per step. */
async function migrate(pool: pg.Pool): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    try {
      await client.query('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
      const r = await client.query<{ version: number }>('SELECT version FROM schema_version');
      const version = r.rows[0]?.version ?? 0;
      if (r.rows.length === 0)
        await client.query('INSERT INTO schema_version (version) VALUES (0)');
      if (version > MIGRATIONS.length) {
        throw new Error(
          `database schema ${version} is newer than this relay (${MIGRATIONS.length})`,
        );
      }
      for (let v = version; v < MIGRATIONS.length; v++) {
        const sql = MIGRATIONS[v];
        if (sql === undefined) break;
        await client.query('BEGIN');
        try {
          await client.query(sql);
          await client.query('UPDATE schema_version SET version = $1', [v + 1]);
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK');
          throw err;
        }
      }
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]);
    }
  } finally {
    client.release();
  }
}
