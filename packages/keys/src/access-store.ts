/**
 * The key service's own membership table (DESIGN.md "Trust and tokens": who may read is decided
 * by the key service). A content key goes only to a current member of the contact: admitted on
 * first use of a valid token (or by an invite) within the participant limit, never after it was
 * kicked or left (transfer), never after the contact expired. Rules shared with the relay in
 * @latchkey/protocol `membership.ts`; admin actions reach this table before the relay's
 * (docs/admin-api.md "Flow").
 *
 * SQLite file of its own (`keys/access.db`, 0600), apart from the wrapped keys, so that an
 * external key manager or HSM gets the same access control. Schema versions by user_version.
 */
import { chmodSync, closeSync, openSync, statSync } from 'node:fs';
import Database from 'better-sqlite3';
import {
  DEFAULT_CONTACT_TTL_MS,
  DEFAULT_MAX_PARTICIPANTS,
  LatchkeyError,
  decideAdmission,
  effectiveState,
  type ContactInfo,
  type ContactState,
  type ParticipantInfo,
  type ParticipantState,
  type Role,
} from '@latchkey/protocol';

export interface AccessStoreOptions {
  /** Database file (created 0600), or ':memory:' for tests. */
  path: string;
  /** Active participants per contact (default 10). */
  maxParticipants?: number;
  /** Lifetime of a contact first seen here (ms, default 30 days). */
  contactTtlMs?: number;
}

export const ACCESS_SCHEMA_VERSION = 2;

const MIGRATIONS: readonly string[] = [
  `CREATE TABLE contacts (
     contact_id TEXT PRIMARY KEY,
     state      TEXT NOT NULL CHECK (state IN ('open', 'closed', 'expired')),
     created_at INTEGER NOT NULL,
     closed_at  INTEGER,
     expires_at INTEGER NOT NULL
   ) STRICT, WITHOUT ROWID;
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
  // v2: the key rotation a kick or transfer owes, written in the membership change's own
  // transaction and kept (state 'done', with the epoch) once rotated, so a re-run reports it.
  // One row per contact: a rotation after the latest removal covers every earlier one; `seq`
  // grows with each removal so a rotation begun before it does not settle it.
  `CREATE TABLE owed_rotations (
     contact_id     TEXT PRIMARY KEY REFERENCES contacts (contact_id),
     action         TEXT NOT NULL CHECK (action IN ('kick', 'transfer')),
     participant_id TEXT NOT NULL,
     seq            INTEGER NOT NULL,
     since          INTEGER NOT NULL,
     state          TEXT NOT NULL CHECK (state IN ('owed', 'done')),
     epoch          INTEGER,
     attempts       INTEGER NOT NULL DEFAULT 0,
     last_error     TEXT
   ) STRICT, WITHOUT ROWID;
   CREATE INDEX owed_rotations_state ON owed_rotations (state);`,
];

/** The key rotation an admin action owes a contact (access table `owed_rotations`). */
export interface OwedRotation {
  contactId: string;
  action: 'kick' | 'transfer';
  /** The participant removed (the leaver of a transfer). */
  participantId: string;
  /** Grows with each removal; settle with the value read before rotating. */
  seq: number;
  /** When the removal was recorded (ms). */
  since: number;
  /** `owed`: not rotated yet; `done`: rotated to `epoch` (null: the contact had no key yet). */
  state: 'owed' | 'done';
  epoch: number | null;
  attempts: number;
  lastError: string | null;
}

interface OwedRow {
  contact_id: string;
  action: 'kick' | 'transfer';
  participant_id: string;
  seq: number;
  since: number;
  state: 'owed' | 'done';
  epoch: number | null;
  attempts: number;
  last_error: string | null;
}

const owedOf = (r: OwedRow): OwedRotation => ({
  contactId: r.contact_id,
  action: r.action,
  participantId: r.participant_id,
  seq: r.seq,
  since: r.since,
  state: r.state,
  epoch: r.epoch,
  attempts: r.attempts,
  lastError: r.last_error,
});

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

function unavailable(err: unknown, what: string): LatchkeyError {
  if (LatchkeyError.is(err)) return err;
  const detail =
    err instanceof Database.SqliteError
      ? `${err.code}: ${err.message}`
      : err instanceof Error
        ? err.name
        : typeof err;
  return new LatchkeyError('KEY_UNAVAILABLE', 'access table unavailable', {
    cause: err,
    detail: `${what}: ${detail}`,
  });
}

/** The key service's membership and deny table. Every method is one transaction. */
export class SqliteAccessStore {
  readonly #db: Database.Database;
  readonly maxParticipants: number;
  readonly contactTtlMs: number;
  #closed = false;

  /**
   * @throws RangeError on a non-positive limit; LatchkeyError KEY_UNAVAILABLE when the file
   *   cannot be opened or has a newer schema.
   */
  constructor(opts: AccessStoreOptions) {
    this.maxParticipants = opts.maxParticipants ?? DEFAULT_MAX_PARTICIPANTS;
    this.contactTtlMs = opts.contactTtlMs ?? DEFAULT_CONTACT_TTL_MS;
    for (const [name, n] of Object.entries({
      maxParticipants: this.maxParticipants,
      contactTtlMs: this.contactTtlMs,
    })) {
      if (!Number.isSafeInteger(n) || n <= 0)
        throw new RangeError(`${name} must be a positive integer`);
    }
    let db: Database.Database | undefined;
    try {
      if (opts.path !== ':memory:' && process.platform !== 'win32') {
        closeSync(openSync(opts.path, 'a', 0o600));
        if ((statSync(opts.path).mode & 0o077) !== 0) chmodSync(opts.path, 0o600);
      }
      db = new Database(opts.path);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      db.pragma('busy_timeout = 5000');
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version > MIGRATIONS.length)
        throw new Error(`access schema ${version} is newer than this key service`);
      for (let v = version; v < MIGRATIONS.length; v++) {
        const sql = MIGRATIONS[v] ?? '';
        const d = db;
        d.transaction(() => {
          d.exec(sql);
          d.pragma(`user_version = ${v + 1}`);
        }).immediate();
      }
    } catch (err) {
      db?.close();
      throw unavailable(err, 'open');
    }
    this.#db = db;
  }

  /**
   * Admits a token holder (creating contact and participant on first use).
   * @throws LatchkeyError CONTACT_EXPIRED, FORBIDDEN (kicked, left, other role), CONTACT_FULL.
   */
  admit(p: { contactId: string; participantId: string; role: Role }, now: number): ContactInfo {
    return this.#tx('admit', () => {
      this.#enter(p.contactId, p.participantId, p.role, now, this.maxParticipants);
      return this.#info(p.contactId, now);
    });
  }

  contact(contactId: string, now: number): ContactInfo | null {
    return this.#tx('contact', () =>
      this.#contact(contactId) ? this.#info(contactId, now) : null,
    );
  }

  listContacts(
    opts: { state?: ContactState; after?: string; limit: number },
    now: number,
  ): ContactInfo[] {
    return this.#tx('list', () => {
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
      return this.#db
        .prepare<(string | number)[], { contact_id: string }>(sql)
        .all(...args, opts.limit)
        .map((r) => this.#info(r.contact_id, now));
    });
  }

  /** @throws LatchkeyError NOT_FOUND, CONTACT_EXPIRED. */
  closeContact(contactId: string, now: number): ContactInfo {
    return this.#tx('close', () => {
      const c = this.#live(contactId, now);
      if (c.state === 'open')
        this.#db
          .prepare("UPDATE contacts SET state = 'closed', closed_at = ? WHERE contact_id = ?")
          .run(now, contactId);
      return this.#info(contactId, now);
    });
  }

  /** @throws LatchkeyError NOT_FOUND, CONTACT_EXPIRED. */
  setExpiry(contactId: string, expiresAt: number, now: number): ContactInfo {
    return this.#tx('expiry', () => {
      this.#live(contactId, now);
      this.#db
        .prepare('UPDATE contacts SET expires_at = ? WHERE contact_id = ?')
        .run(expiresAt, contactId);
      return this.#info(contactId, now);
    });
  }

  /**
   * Marks a participant kicked (recording unknown contacts and participants). With `owe`, a
   * participant who was not kicked yet also leaves an owed key rotation in the same transaction
   * (see `owedRotation`), so the rotation survives a crash or a key manager outage.
   * @throws LatchkeyError CONTACT_EXPIRED.
   */
  kick(
    contactId: string,
    participantId: string,
    now: number,
    opts: { oweRotation?: boolean } = {},
  ): ContactInfo {
    return this.#tx('kick', () => {
      this.#ensure(contactId, now);
      const p = this.#participant(contactId, participantId);
      if (!p) this.#insert(contactId, participantId, null, 'kicked', now);
      else if (p.state !== 'kicked') this.#setState(contactId, participantId, 'kicked', now);
      if (p?.state !== 'kicked' && opts.oweRotation === true)
        this.#owe(contactId, 'kick', participantId, now);
      return this.#info(contactId, now);
    });
  }

  /** @throws LatchkeyError CONTACT_EXPIRED, FORBIDDEN, CONTACT_FULL. */
  invite(contactId: string, participantId: string, role: Role, now: number): ContactInfo {
    return this.#tx('invite', () => {
      this.#enter(contactId, participantId, role, now, this.maxParticipants);
      return this.#info(contactId, now);
    });
  }

  /**
   * `from` (an agent) leaves, `to` joins as an agent. With `oweRotation`, a leaver who was still
   * active (or unknown) leaves an owed key rotation in the same transaction.
   * @throws LatchkeyError FORBIDDEN, CONTACT_EXPIRED.
   */
  transfer(
    contactId: string,
    from: string,
    to: string,
    now: number,
    opts: { oweRotation?: boolean } = {},
  ): ContactInfo {
    return this.#tx('transfer', () => {
      this.#ensure(contactId, now);
      const leaving = this.#participant(contactId, from);
      if (leaving && leaving.role !== null && leaving.role !== 'agent') {
        throw new LatchkeyError('FORBIDDEN', 'only an agent hands a contact over');
      }
      if (!leaving) this.#insert(contactId, from, 'agent', 'left', now);
      else if (leaving.state === 'active') this.#setState(contactId, from, 'left', now);
      this.#enter(contactId, to, 'agent', now, Number.MAX_SAFE_INTEGER);
      if ((!leaving || leaving.state === 'active') && opts.oweRotation === true)
        this.#owe(contactId, 'transfer', from, now);
      return this.#info(contactId, now);
    });
  }

  /** The rotation last owed by a kick or transfer of the contact (owed or done), if any. */
  owedRotation(contactId: string): OwedRotation | undefined {
    return this.#tx('owed', () => {
      const r = this.#db
        .prepare<[string], OwedRow>('SELECT * FROM owed_rotations WHERE contact_id = ?')
        .get(contactId);
      return r && owedOf(r);
    });
  }

  /** Every rotation still owed, oldest first (for the retry sweep). */
  owedRotations(): OwedRotation[] {
    return this.#tx('owed', () =>
      this.#db
        .prepare<[], OwedRow>(
          "SELECT * FROM owed_rotations WHERE state = 'owed' ORDER BY since, contact_id",
        )
        .all()
        .map(owedOf),
    );
  }

  /**
   * Records an owed rotation as done (`epoch` null: the contact had no key to rotate), unless a
   * later removal (another `seq`) owes a new one. Returns whether it settled the row.
   */
  rotationDone(contactId: string, seq: number, epoch: number | null): boolean {
    return this.#tx(
      'owed',
      () =>
        this.#db
          .prepare(
            "UPDATE owed_rotations SET state = 'done', epoch = ?, last_error = NULL WHERE contact_id = ? AND seq = ? AND state = 'owed'",
          )
          .run(epoch, contactId, seq).changes === 1,
    );
  }

  /** Counts a failed attempt at an owed rotation (the error's code and message, no secrets). */
  rotationFailed(contactId: string, seq: number, error: string): void {
    this.#tx('owed', () => {
      this.#db
        .prepare(
          "UPDATE owed_rotations SET attempts = attempts + 1, last_error = ? WHERE contact_id = ? AND seq = ? AND state = 'owed'",
        )
        .run(error.slice(0, 200), contactId, seq);
    });
  }

  /** Marks contacts past their expiry as expired and returns their ids (for key retention). */
  expireDue(now: number): string[] {
    return this.#tx('expire', () => {
      const rows = this.#db
        .prepare<[number], { contact_id: string }>(
          "SELECT contact_id FROM contacts WHERE state != 'expired' AND expires_at <= ?",
        )
        .all(now);
      for (const r of rows)
        this.#db
          .prepare("UPDATE contacts SET state = 'expired' WHERE contact_id = ?")
          .run(r.contact_id);
      return rows.map((r) => r.contact_id);
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }

  /** Owes the contact a key rotation (inside the membership change's transaction). */
  #owe(contactId: string, action: 'kick' | 'transfer', participantId: string, now: number): void {
    this.#db
      .prepare(
        `INSERT INTO owed_rotations (contact_id, action, participant_id, seq, since, state, epoch, attempts, last_error)
         VALUES (?, ?, ?, 1, ?, 'owed', NULL, 0, NULL)
         ON CONFLICT (contact_id) DO UPDATE SET action = excluded.action,
           participant_id = excluded.participant_id, seq = seq + 1, since = excluded.since,
           state = 'owed', epoch = NULL, attempts = 0, last_error = NULL`,
      )
      .run(contactId, action, participantId, now);
  }

  #tx<T>(what: string, fn: () => T): T {
    if (this.#closed) throw new LatchkeyError('KEY_UNAVAILABLE', 'access table closed');
    try {
      return this.#db.transaction(fn).immediate();
    } catch (err) {
      throw unavailable(err, what);
    }
  }

  #contact(contactId: string): ContactRow | undefined {
    return this.#db
      .prepare<[string], ContactRow>(
        'SELECT contact_id, state, created_at, closed_at, expires_at FROM contacts WHERE contact_id = ?',
      )
      .get(contactId);
  }

  #participant(contactId: string, participantId: string): ParticipantRow | undefined {
    return this.#db
      .prepare<[string, string], ParticipantRow>(
        'SELECT participant_id, role, state, joined_at, left_at FROM participants WHERE contact_id = ? AND participant_id = ?',
      )
      .get(contactId, participantId);
  }

  #live(contactId: string, now: number): ContactRow {
    const c = this.#contact(contactId);
    if (!c) throw new LatchkeyError('NOT_FOUND', 'no such contact');
    if (effectiveState({ state: c.state, expiresAt: c.expires_at }, now) === 'expired') {
      throw new LatchkeyError('CONTACT_EXPIRED', 'contact expired');
    }
    return c;
  }

  #ensure(contactId: string, now: number): void {
    if (!this.#contact(contactId)) this.#newContact(contactId, now);
    else this.#live(contactId, now);
  }

  #newContact(contactId: string, now: number): void {
    this.#db
      .prepare(
        "INSERT INTO contacts (contact_id, state, created_at, closed_at, expires_at) VALUES (?, 'open', ?, NULL, ?)",
      )
      .run(contactId, now, now + this.contactTtlMs);
  }

  #insert(
    contactId: string,
    participantId: string,
    role: Role | null,
    state: ParticipantState,
    now: number,
  ): void {
    this.#db
      .prepare(
        'INSERT INTO participants (contact_id, participant_id, role, state, joined_at, left_at) VALUES (?, ?, ?, ?, ?, ?)',
      )
      .run(contactId, participantId, role, state, now, state === 'active' ? null : now);
  }

  #setState(contactId: string, participantId: string, state: 'left' | 'kicked', now: number): void {
    this.#db
      .prepare(
        'UPDATE participants SET state = ?, left_at = ? WHERE contact_id = ? AND participant_id = ?',
      )
      .run(state, now, contactId, participantId);
  }

  #enter(
    contactId: string,
    participantId: string,
    role: Role,
    now: number,
    maxParticipants: number,
  ): void {
    const c = this.#contact(contactId);
    const p = this.#participant(contactId, participantId);
    const active = this.#db
      .prepare<[string], { n: number }>(
        "SELECT count(*) AS n FROM participants WHERE contact_id = ? AND state = 'active'",
      )
      .get(contactId);
    const decision = decideAdmission({
      contact: c ? { state: c.state, expiresAt: c.expires_at } : null,
      participant: p ? { role: p.role, state: p.state } : null,
      activeCount: active?.n ?? 0,
      role,
      now,
      maxParticipants,
    });
    if (!decision.ok) throw new LatchkeyError(decision.code, decision.message);
    if (decision.createContact) this.#newContact(contactId, now);
    if (decision.createParticipant) this.#insert(contactId, participantId, role, 'active', now);
  }

  #info(contactId: string, now: number): ContactInfo {
    const c = this.#contact(contactId);
    if (!c) throw new LatchkeyError('NOT_FOUND', 'no such contact');
    const participants: ParticipantInfo[] = this.#db
      .prepare<[string], ParticipantRow>(
        'SELECT participant_id, role, state, joined_at, left_at FROM participants WHERE contact_id = ? ORDER BY joined_at, participant_id',
      )
      .all(contactId)
      .map((r) => ({
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
}
