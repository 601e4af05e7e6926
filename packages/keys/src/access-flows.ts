/**
 * The key service's membership-table logic, written once as flows (@latchkey/storage flow.ts)
 * for both of its backends: the SQLite file of one machine (access-store.ts) and the PostgreSQL
 * database a cluster shares (stores/pg-service-state.ts). Membership rules are @latchkey/storage
 * `Membership`; this adds the key rotations that removals owe (`owed_rotations`).
 */
import {
  DEFAULT_CONTACT_TTL_MS,
  DEFAULT_MAX_PARTICIPANTS,
  type ContactInfo,
  type Role,
} from '@latchkey/protocol';
import {
  Membership,
  exec,
  row,
  rows,
  type ContactPolicy,
  type Flow,
  type ListContactsOptions,
  type Sql,
} from '@latchkey/storage';

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

const OWE = `INSERT INTO owed_rotations (contact_id, action, participant_id, seq, since, state, epoch, attempts, last_error)
  VALUES (?, ?, ?, 1, ?, 'owed', NULL, 0, NULL)
  ON CONFLICT (contact_id) DO UPDATE SET action = excluded.action,
    participant_id = excluded.participant_id, seq = owed_rotations.seq + 1, since = excluded.since,
    state = 'owed', epoch = NULL, attempts = 0, last_error = NULL`;

/** A flow to run in one transaction of either backend. */
export type AccessFlow<T> = (sql: Sql) => Flow<T>;

/** The membership table's operations as flows, under one contact policy. */
export class AccessFlows {
  readonly #policy: ContactPolicy;

  /**
   * Limits default to DEFAULT_MAX_PARTICIPANTS and DEFAULT_CONTACT_TTL_MS.
   * @throws RangeError on a non-positive limit.
   */
  constructor(opts: { maxParticipants?: number | undefined; contactTtlMs?: number | undefined }) {
    const policy: ContactPolicy = {
      maxParticipants: opts.maxParticipants ?? DEFAULT_MAX_PARTICIPANTS,
      contactTtlMs: opts.contactTtlMs ?? DEFAULT_CONTACT_TTL_MS,
    };
    for (const [name, n] of Object.entries(policy)) {
      if (!Number.isSafeInteger(n) || n <= 0)
        throw new RangeError(`${name} must be a positive integer`);
    }
    this.#policy = policy;
  }

  /** The limits in force. */
  get policy(): Readonly<ContactPolicy> {
    return this.#policy;
  }

  #members<T>(flow: (m: Membership, sql: Sql) => Flow<T>): AccessFlow<T> {
    const tables = { contactTtlMs: this.#policy.contactTtlMs };
    return (sql) => flow(new Membership(sql, tables), sql);
  }

  admit(
    p: { contactId: string; participantId: string; role: Role },
    now: number,
  ): AccessFlow<ContactInfo> {
    return this.#members((m) => m.admit(p.contactId, p.participantId, p.role, now, this.#policy));
  }

  contact(contactId: string, now: number): AccessFlow<ContactInfo | null> {
    return this.#members((m) => m.contact(contactId, now));
  }

  list(opts: ListContactsOptions, now: number): AccessFlow<ContactInfo[]> {
    return this.#members((m) => m.list(opts, now));
  }

  close(contactId: string, now: number): AccessFlow<ContactInfo> {
    return this.#members(function* (m) {
      yield* m.close(contactId, now);
      return yield* m.info(contactId, now);
    });
  }

  setExpiry(contactId: string, expiresAt: number, now: number): AccessFlow<ContactInfo> {
    return this.#members(function* (m) {
      yield* m.setExpiry(contactId, expiresAt, now);
      return yield* m.info(contactId, now);
    });
  }

  kick(
    contactId: string,
    participantId: string,
    now: number,
    owe: boolean,
  ): AccessFlow<ContactInfo> {
    return this.#members(function* (m, sql) {
      const removed = yield* m.kick(contactId, participantId, now);
      if (removed && owe) yield* exec(sql, OWE, [contactId, 'kick', participantId, now]);
      return yield* m.info(contactId, now);
    });
  }

  transfer(
    contactId: string,
    from: string,
    to: string,
    now: number,
    owe: boolean,
  ): AccessFlow<ContactInfo> {
    return this.#members(function* (m, sql) {
      const removed = yield* m.transfer(contactId, from, to, now);
      if (removed && owe) yield* exec(sql, OWE, [contactId, 'transfer', from, now]);
      return yield* m.info(contactId, now);
    });
  }

  expireDue(now: number): AccessFlow<string[]> {
    return this.#members((m) => m.expireDue(now));
  }

  owed(contactId: string): AccessFlow<OwedRotation | undefined> {
    return function* (sql) {
      const r = yield* row<OwedRow>(sql, 'SELECT * FROM owed_rotations WHERE contact_id = ?', [
        contactId,
      ]);
      return r && owedOf(r);
    };
  }

  allOwed(): AccessFlow<OwedRotation[]> {
    return function* (sql) {
      const rs = yield* rows<OwedRow>(
        sql,
        "SELECT * FROM owed_rotations WHERE state = 'owed' ORDER BY since, contact_id",
        [],
      );
      return rs.map(owedOf);
    };
  }

  rotationDone(contactId: string, seq: number, epoch: number | null): AccessFlow<boolean> {
    return function* (sql) {
      const n = yield* exec(
        sql,
        "UPDATE owed_rotations SET state = 'done', epoch = ?, last_error = NULL WHERE contact_id = ? AND seq = ? AND state = 'owed'",
        [epoch, contactId, seq],
      );
      return n === 1;
    };
  }

  rotationFailed(contactId: string, seq: number, error: string): AccessFlow<void> {
    return function* (sql) {
      yield* exec(
        sql,
        "UPDATE owed_rotations SET attempts = attempts + 1, last_error = ? WHERE contact_id = ? AND seq = ? AND state = 'owed'",
        [error.slice(0, 200), contactId, seq],
      );
    };
  }
}
