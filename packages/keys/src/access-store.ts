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
 * The membership logic is @latchkey/storage `Membership`, the same as the relay's contact
 * stores run; this table adds the key rotations that removals owe. Its methods are synchronous
 * (better-sqlite3) for the key service's callers.
 */
import {
  DEFAULT_CONTACT_TTL_MS,
  DEFAULT_MAX_PARTICIPANTS,
  LatchkeyError,
  type ContactInfo,
  type Role,
} from '@latchkey/protocol';
import {
  Membership,
  exec,
  participantsTable,
  row,
  rows,
  type ContactPolicy,
  type Flow,
  type ListContactsOptions,
  type Sql,
} from '@latchkey/storage';
import {
  isSqliteError,
  migrateSqlite,
  openSqlite,
  runSqlite,
  type SqliteDatabase,
} from '@latchkey/storage/sqlite';

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
   ${participantsTable('sqlite')}`,
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

function unavailable(err: unknown, what: string): LatchkeyError {
  if (LatchkeyError.is(err)) return err;
  const detail = isSqliteError(err)
    ? `${err.code}: ${err.message}`
    : err instanceof Error
      ? err.name
      : typeof err;
  return new LatchkeyError('KEY_UNAVAILABLE', 'access table unavailable', {
    cause: err,
    detail: `${what}: ${detail}`,
  });
}

const OWE = `INSERT INTO owed_rotations (contact_id, action, participant_id, seq, since, state, epoch, attempts, last_error)
  VALUES (?, ?, ?, 1, ?, 'owed', NULL, 0, NULL)
  ON CONFLICT (contact_id) DO UPDATE SET action = excluded.action,
    participant_id = excluded.participant_id, seq = seq + 1, since = excluded.since,
    state = 'owed', epoch = NULL, attempts = 0, last_error = NULL`;

/** The key service's membership and deny table. Every method is one transaction. */
export class SqliteAccessStore {
  readonly #db: SqliteDatabase;
  readonly maxParticipants: number;
  readonly contactTtlMs: number;
  #closed = false;

  /**
   * @throws RangeError on a non-positive limit; LatchkeyError KEY_UNAVAILABLE when the file
   *   cannot be opened or has a newer schema (SchemaTooNewError).
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
    let db: SqliteDatabase | undefined;
    try {
      db = openSqlite(opts.path, { private: true, synchronous: 'FULL' });
      migrateSqlite(db, MIGRATIONS, `access table ${opts.path}`, { code: 'KEY_UNAVAILABLE' });
    } catch (err) {
      db?.close();
      throw unavailable(err, 'open');
    }
    this.#db = db;
  }

  get #policy(): ContactPolicy {
    return { maxParticipants: this.maxParticipants, contactTtlMs: this.contactTtlMs };
  }

  /**
   * Admits a token holder (creating contact and participant on first use).
   * @throws LatchkeyError CONTACT_EXPIRED, FORBIDDEN (kicked, left, other role), CONTACT_FULL.
   */
  admit(p: { contactId: string; participantId: string; role: Role }, now: number): ContactInfo {
    return this.#members('admit', (m) =>
      m.admit(p.contactId, p.participantId, p.role, now, this.#policy),
    );
  }

  /**
   * Admits several token holders in one transaction (one sync to disk: the key service's group
   * commit of a join burst), each as `admit` would, in this order, each in a savepoint of its own
   * so that one refused leaves the others admitted.
   * @returns per holder its contact, or the LatchkeyError that refused it.
   * @throws LatchkeyError KEY_UNAVAILABLE when the table cannot be written (nothing is admitted).
   */
  admitMany(
    ps: readonly { contactId: string; participantId: string; role: Role }[],
    now: number,
  ): (ContactInfo | LatchkeyError)[] {
    if (this.#closed) throw new LatchkeyError('KEY_UNAVAILABLE', 'access table closed');
    const tables = { contactTtlMs: this.contactTtlMs };
    const one = (p: (typeof ps)[number]): ContactInfo | LatchkeyError => {
      try {
        // Nested in the transaction below: a savepoint, rolled back alone when refused.
        return runSqlite(this.#db, (sql) =>
          new Membership(sql, tables).admit(
            p.contactId,
            p.participantId,
            p.role,
            now,
            this.#policy,
          ),
        );
      } catch (err) {
        if (LatchkeyError.is(err)) return err;
        throw err;
      }
    };
    try {
      return this.#db.transaction(() => ps.map(one)).immediate();
    } catch (err) {
      throw unavailable(err, 'admit');
    }
  }

  contact(contactId: string, now: number): ContactInfo | null {
    return this.#members('contact', (m) => m.contact(contactId, now));
  }

  listContacts(opts: ListContactsOptions, now: number): ContactInfo[] {
    return this.#members('list', (m) => m.list(opts, now));
  }

  /** @throws LatchkeyError NOT_FOUND, CONTACT_EXPIRED. */
  closeContact(contactId: string, now: number): ContactInfo {
    return this.#members('close', function* (m) {
      yield* m.close(contactId, now);
      return yield* m.info(contactId, now);
    });
  }

  /** @throws LatchkeyError NOT_FOUND, CONTACT_EXPIRED. */
  setExpiry(contactId: string, expiresAt: number, now: number): ContactInfo {
    return this.#members('expiry', function* (m) {
      yield* m.setExpiry(contactId, expiresAt, now);
      return yield* m.info(contactId, now);
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
    return this.#members('kick', function* (m, sql) {
      const removed = yield* m.kick(contactId, participantId, now);
      if (removed && opts.oweRotation === true)
        yield* exec(sql, OWE, [contactId, 'kick', participantId, now]);
      return yield* m.info(contactId, now);
    });
  }

  /** @throws LatchkeyError CONTACT_EXPIRED, FORBIDDEN, CONTACT_FULL. */
  invite(contactId: string, participantId: string, role: Role, now: number): ContactInfo {
    return this.#members('invite', (m) =>
      m.admit(contactId, participantId, role, now, this.#policy),
    );
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
    return this.#members('transfer', function* (m, sql) {
      const removed = yield* m.transfer(contactId, from, to, now);
      if (removed && opts.oweRotation === true)
        yield* exec(sql, OWE, [contactId, 'transfer', from, now]);
      return yield* m.info(contactId, now);
    });
  }

  /** The rotation last owed by a kick or transfer of the contact (owed or done), if any. */
  owedRotation(contactId: string): OwedRotation | undefined {
    return this.#tx('owed', function* (sql) {
      const r = yield* row<OwedRow>(sql, 'SELECT * FROM owed_rotations WHERE contact_id = ?', [
        contactId,
      ]);
      return r && owedOf(r);
    });
  }

  /** Every rotation still owed, oldest first (for the retry sweep). */
  owedRotations(): OwedRotation[] {
    return this.#tx('owed', function* (sql) {
      const rs = yield* rows<OwedRow>(
        sql,
        "SELECT * FROM owed_rotations WHERE state = 'owed' ORDER BY since, contact_id",
        [],
      );
      return rs.map(owedOf);
    });
  }

  /**
   * Records an owed rotation as done (`epoch` null: the contact had no key to rotate), unless a
   * later removal (another `seq`) owes a new one. Returns whether it settled the row.
   */
  rotationDone(contactId: string, seq: number, epoch: number | null): boolean {
    return this.#tx('owed', function* (sql) {
      const n = yield* exec(
        sql,
        "UPDATE owed_rotations SET state = 'done', epoch = ?, last_error = NULL WHERE contact_id = ? AND seq = ? AND state = 'owed'",
        [epoch, contactId, seq],
      );
      return n === 1;
    });
  }

  /** Counts a failed attempt at an owed rotation (the error's code and message, no secrets). */
  rotationFailed(contactId: string, seq: number, error: string): void {
    this.#tx('owed', function* (sql) {
      yield* exec(
        sql,
        "UPDATE owed_rotations SET attempts = attempts + 1, last_error = ? WHERE contact_id = ? AND seq = ? AND state = 'owed'",
        [error.slice(0, 200), contactId, seq],
      );
    });
  }

  /** Marks contacts past their expiry as expired and returns their ids (for key retention). */
  expireDue(now: number): string[] {
    return this.#members('expire', (m) => m.expireDue(now));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }

  /** Runs a flow in one IMMEDIATE transaction; storage failures become KEY_UNAVAILABLE. */
  #tx<T>(what: string, flow: (sql: Sql) => Flow<T>): T {
    if (this.#closed) throw new LatchkeyError('KEY_UNAVAILABLE', 'access table closed');
    try {
      return runSqlite(this.#db, flow);
    } catch (err) {
      throw unavailable(err, what);
    }
  }

  #members<T>(what: string, flow: (m: Membership, sql: Sql) => Flow<T>): T {
    const tables = { contactTtlMs: this.contactTtlMs };
    return this.#tx(what, (sql) => flow(new Membership(sql, tables), sql));
  }
}
