/**
 * Contact lifecycle and membership, written once for every store that keeps them: the relay's
 * message stores (SQLite and PostgreSQL) and the key service's access table. The rules are in
 * @latchkey/protocol `membership.ts` (`decideAdmission`, `effectiveState`); this module keeps
 * them in the `contacts` and `participants` tables, through `Sql` (sql.ts) inside one
 * transaction per call, so the same flow runs on better-sqlite3 and on pg (flow.ts).
 *
 * Tables (each store creates them in its own migrations, with columns of its own besides):
 * `contacts (contact_id, state, created_at, closed_at, expires_at)` and
 * `participants (contact_id, participant_id, role, state, joined_at, left_at)`.
 */
import {
  DEFAULT_CONTACT_TTL_MS,
  LatchkeyError,
  decideAdmission,
  effectiveState,
  type ContactInfo,
  type ContactState,
  type ParticipantState,
  type Role,
} from '@latchkey/protocol';
import type { Flow } from './flow.ts';
import { exec, forUpdate, row, rows, type Sql, type SqlValue } from './sql.ts';

/** Limits applied when a participant enters a contact. */
export interface ContactPolicy {
  /** Active participants a contact may have (default DEFAULT_MAX_PARTICIPANTS, 10). */
  maxParticipants: number;
  /** Lifetime of a new contact in ms (default DEFAULT_CONTACT_TTL_MS, 30 days). */
  contactTtlMs: number;
}

export interface ListContactsOptions {
  state?: ContactState;
  /** Only contacts with an id greater than this (paging). */
  after?: string;
  limit: number;
}

/**
 * The participants table as membership keeps it, for a store's own migration: the same text in
 * every store (SQLite adds STRICT, WITHOUT ROWID; PostgreSQL times are BIGINT). Released steps
 * use it, so it never changes: a new column is a new step of each store.
 */
export function participantsTable(dialect: 'sqlite' | 'postgres'): string {
  const time = dialect === 'sqlite' ? 'INTEGER' : 'BIGINT';
  return `CREATE TABLE participants (
     contact_id     TEXT NOT NULL REFERENCES contacts (contact_id),
     participant_id TEXT NOT NULL,
     role           TEXT CHECK (role IN ('visitor', 'agent', 'supervisor')),
     state          TEXT NOT NULL CHECK (state IN ('active', 'left', 'kicked')),
     joined_at      ${time} NOT NULL,
     left_at        ${time},
     PRIMARY KEY (contact_id, participant_id)
   )${dialect === 'sqlite' ? ' STRICT, WITHOUT ROWID' : ''};`;
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

const CONTACT = 'SELECT contact_id, state, created_at, closed_at, expires_at FROM contacts';
const PARTICIPANT = 'SELECT participant_id, role, state, joined_at, left_at FROM participants';

export interface ContactTables {
  /** Lifetime of a contact a kick or transfer records first (ms, default 30 days). */
  contactTtlMs?: number;
  /** Values of a store's own NOT NULL columns for a new contact row (e.g. `{ head_seq: 0 }`). */
  newContact?: Readonly<Record<string, number>>;
}

/**
 * The membership rules over one transaction's `Sql`. Each method is a flow (flow.ts); a store
 * runs it with `runSqlite` or `runPostgres`. On PostgreSQL the contact's row is locked before
 * anything of it is decided, so relays sharing the database decide one at a time.
 */
export class Membership {
  readonly #sql: Sql;
  readonly #ttl: number;
  readonly #insertContact: string;

  constructor(sql: Sql, tables: ContactTables = {}) {
    this.#sql = sql;
    this.#ttl = tables.contactTtlMs ?? DEFAULT_CONTACT_TTL_MS;
    const extra = Object.entries(tables.newContact ?? {});
    for (const [name, value] of extra) {
      if (!/^[a-z_]+$/.test(name) || !Number.isSafeInteger(value))
        throw new TypeError('newContact: column names and integer values only');
    }
    this.#insertContact =
      `INSERT INTO contacts (contact_id, state, created_at, expires_at${extra.map(([n]) => `, ${n}`).join('')}) ` +
      `VALUES (?, 'open', ?, ?${extra.map(([, v]) => `, ${v}`).join('')}) ON CONFLICT (contact_id) DO NOTHING`;
  }

  /** Admits (creating contact and participant on first use); the contact afterwards. */
  *admit(
    contactId: string,
    participantId: string,
    role: Role,
    now: number,
    policy: ContactPolicy,
  ): Flow<ContactInfo> {
    yield* this.#enter(contactId, participantId, role, now, policy);
    return yield* this.info(contactId, now);
  }

  /** The contact as of `now` with its participants, or null when unknown. */
  *contact(contactId: string, now: number): Flow<ContactInfo | null> {
    const c = yield* this.#contact(contactId, false);
    return c ? yield* this.#infoOf(c, now) : null;
  }

  /** The contact as of `now` with its participants. @throws LatchkeyError NOT_FOUND */
  *info(contactId: string, now: number): Flow<ContactInfo> {
    const info = yield* this.contact(contactId, now);
    if (!info) throw new LatchkeyError('NOT_FOUND', 'no such contact');
    return info;
  }

  *list(opts: ListContactsOptions, now: number): Flow<ContactInfo[]> {
    const where: string[] = [];
    const args: SqlValue[] = [];
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
    const ids = yield* rows<{ contact_id: string }>(
      this.#sql,
      `SELECT contact_id FROM contacts ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY contact_id LIMIT ?`,
      [...args, opts.limit],
    );
    const out: ContactInfo[] = [];
    for (const r of ids) {
      const info = yield* this.contact(r.contact_id, now);
      if (info) out.push(info);
    }
    return out;
  }

  /** open -> closed. @throws LatchkeyError NOT_FOUND, CONTACT_EXPIRED */
  *close(contactId: string, now: number): Flow<void> {
    const c = yield* this.#live(contactId, now);
    if (c.state === 'open') {
      yield* exec(
        this.#sql,
        "UPDATE contacts SET state = 'closed', closed_at = ? WHERE contact_id = ?",
        [now, contactId],
      );
    }
  }

  /** @throws LatchkeyError NOT_FOUND, CONTACT_EXPIRED */
  *setExpiry(contactId: string, expiresAt: number, now: number): Flow<void> {
    yield* this.#live(contactId, now);
    yield* exec(this.#sql, 'UPDATE contacts SET expires_at = ? WHERE contact_id = ?', [
      expiresAt,
      contactId,
    ]);
  }

  /**
   * Marks a participant kicked (recording an unknown contact or participant).
   * @returns true when it was not kicked before (it is removed now).
   * @throws LatchkeyError CONTACT_EXPIRED
   */
  *kick(contactId: string, participantId: string, now: number): Flow<boolean> {
    yield* this.#ensure(contactId, now);
    const p = yield* this.#participant(contactId, participantId);
    // Never seen here yet: a deny entry, so its first connection is refused too.
    if (!p) yield* this.#insertParticipant(contactId, participantId, null, 'kicked', now);
    else if (p.state !== 'kicked') yield* this.#leave(contactId, participantId, 'kicked', now);
    return p?.state !== 'kicked';
  }

  /**
   * `from` (an agent) leaves, `to` joins as an agent in its seat.
   * @returns true when `from` was active or unknown (it is removed now).
   * @throws LatchkeyError FORBIDDEN, CONTACT_EXPIRED
   */
  *transfer(contactId: string, from: string, to: string, now: number): Flow<boolean> {
    yield* this.#ensure(contactId, now);
    const leaving = yield* this.#participant(contactId, from);
    if (leaving && leaving.role !== null && leaving.role !== 'agent') {
      throw new LatchkeyError('FORBIDDEN', 'only an agent hands a contact over');
    }
    // Not seen here yet: recorded as departed, so it cannot enter later.
    if (!leaving) yield* this.#insertParticipant(contactId, from, 'agent', 'left', now);
    else if (leaving.state === 'active') yield* this.#leave(contactId, from, 'left', now);
    // The newcomer takes the leaver's seat, so the limit cannot refuse it.
    yield* this.#enter(contactId, to, 'agent', now, {
      maxParticipants: Number.MAX_SAFE_INTEGER,
      contactTtlMs: this.#ttl,
    });
    return !leaving || leaving.state === 'active';
  }

  /** Marks every contact past its expiry as expired; their ids in id order. */
  *expireDue(now: number): Flow<string[]> {
    // PostgreSQL: rows another relay is expiring right now are left to it.
    const lock =
      this.#sql.dialect === 'postgres' ? ' ORDER BY contact_id FOR UPDATE SKIP LOCKED' : '';
    const due = yield* rows<{ contact_id: string }>(
      this.#sql,
      `SELECT contact_id FROM contacts WHERE state != 'expired' AND expires_at <= ?${lock}`,
      [now],
    );
    for (const r of due) {
      yield* exec(this.#sql, "UPDATE contacts SET state = 'expired' WHERE contact_id = ?", [
        r.contact_id,
      ]);
    }
    return due.map((r) => r.contact_id).sort();
  }

  *#contact(contactId: string, lock: boolean): Flow<ContactRow | undefined> {
    return yield* row<ContactRow>(
      this.#sql,
      `${CONTACT} WHERE contact_id = ?${forUpdate(this.#sql, lock)}`,
      [contactId],
    );
  }

  *#participant(contactId: string, participantId: string): Flow<ParticipantRow | undefined> {
    return yield* row<ParticipantRow>(
      this.#sql,
      `${PARTICIPANT} WHERE contact_id = ? AND participant_id = ?`,
      [contactId, participantId],
    );
  }

  /** Creates the contact (open, default lifetime) when unknown; refuses an expired one. */
  *#ensure(contactId: string, now: number): Flow<ContactRow> {
    yield* exec(this.#sql, this.#insertContact, [contactId, now, now + this.#ttl]);
    return yield* this.#live(contactId, now);
  }

  /** The (locked) contact row unless it is unknown or expired. */
  *#live(contactId: string, now: number): Flow<ContactRow> {
    const c = yield* this.#contact(contactId, true);
    if (!c) throw new LatchkeyError('NOT_FOUND', 'no such contact');
    if (effectiveState({ state: c.state, expiresAt: c.expires_at }, now) === 'expired') {
      throw new LatchkeyError('CONTACT_EXPIRED', 'contact expired');
    }
    return c;
  }

  *#enter(
    contactId: string,
    participantId: string,
    role: Role,
    now: number,
    policy: ContactPolicy,
  ): Flow<void> {
    // The contact's row locked first, so that the count cannot race another relay's admission.
    const c = yield* this.#contact(contactId, true);
    const p = yield* this.#participant(contactId, participantId);
    const count = yield* row<{ n: number }>(
      this.#sql,
      "SELECT count(*) AS n FROM participants WHERE contact_id = ? AND state = 'active'",
      [contactId],
    );
    const decision = decideAdmission({
      contact: c ? { state: c.state, expiresAt: c.expires_at } : null,
      participant: p ? { role: p.role, state: p.state } : null,
      activeCount: count?.n ?? 0,
      role,
      now,
      maxParticipants: policy.maxParticipants,
    });
    if (!decision.ok) throw new LatchkeyError(decision.code, decision.message);
    if (decision.createContact) {
      const created = yield* exec(this.#sql, this.#insertContact, [
        contactId,
        now,
        now + policy.contactTtlMs,
      ]);
      // Another relay created it meanwhile: decide again against its row, now locked.
      if (created === 0) return yield* this.#enter(contactId, participantId, role, now, policy);
    }
    if (decision.createParticipant)
      yield* this.#insertParticipant(contactId, participantId, role, 'active', now);
  }

  *#insertParticipant(
    contactId: string,
    participantId: string,
    role: Role | null,
    state: ParticipantState,
    now: number,
  ): Flow<void> {
    yield* exec(
      this.#sql,
      'INSERT INTO participants (contact_id, participant_id, role, state, joined_at, left_at) VALUES (?, ?, ?, ?, ?, ?)',
      [contactId, participantId, role, state, now, state === 'active' ? null : now],
    );
  }

  *#leave(
    contactId: string,
    participantId: string,
    state: 'left' | 'kicked',
    now: number,
  ): Flow<void> {
    yield* exec(
      this.#sql,
      'UPDATE participants SET state = ?, left_at = ? WHERE contact_id = ? AND participant_id = ?',
      [state, now, contactId, participantId],
    );
  }

  *#infoOf(c: ContactRow, now: number): Flow<ContactInfo> {
    const ps = yield* rows<ParticipantRow>(
      this.#sql,
      `${PARTICIPANT} WHERE contact_id = ? ORDER BY joined_at, participant_id`,
      [c.contact_id],
    );
    return {
      contactId: c.contact_id,
      state: effectiveState({ state: c.state, expiresAt: c.expires_at }, now),
      createdAt: c.created_at,
      closedAt: c.closed_at,
      expiresAt: c.expires_at,
      participants: ps.map((r) => ({
        participantId: r.participant_id,
        role: r.role,
        state: r.state,
        joinedAt: r.joined_at,
        leftAt: r.left_at,
      })),
    };
  }
}
