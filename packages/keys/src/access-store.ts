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
import { LatchkeyError, type ContactInfo, type Role } from '@latchkey/protocol';
import {
  participantsTable,
  roleScannerStep,
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
import { AccessFlows, type OwedRotation } from './access-flows.ts';
import type { AccessTable } from './service-state.ts';

export type { OwedRotation } from './access-flows.ts';

export interface AccessStoreOptions {
  /** Database file (created 0600), or ':memory:' for tests. */
  path: string;
  /** Active participants per contact (default 10). */
  maxParticipants?: number;
  /** Lifetime of a contact first seen here (ms, default 30 days). */
  contactTtlMs?: number;
}

export const ACCESS_SCHEMA_VERSION = 3;

/** Step `i` migrates user_version `i` to `i + 1` (exported for the migration tests). */
export const MIGRATIONS: readonly string[] = [
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
  // v3: participants may have the role scanner (@latchkey/storage role-scanner-migration.ts).
  roleScannerStep('sqlite'),
];

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

/** The key service's membership and deny table in a SQLite file. Every method is one transaction. */
export class SqliteAccessStore implements AccessTable {
  readonly #db: SqliteDatabase;
  readonly #flows: AccessFlows;
  readonly maxParticipants: number;
  readonly contactTtlMs: number;
  #closed = false;

  /**
   * @throws RangeError on a non-positive limit; LatchkeyError KEY_UNAVAILABLE when the file
   *   cannot be opened or has a newer schema (SchemaTooNewError).
   */
  constructor(opts: AccessStoreOptions) {
    this.#flows = new AccessFlows(opts);
    ({ maxParticipants: this.maxParticipants, contactTtlMs: this.contactTtlMs } =
      this.#flows.policy);
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

  /**
   * Admits a token holder (creating contact and participant on first use).
   * @throws LatchkeyError CONTACT_EXPIRED, FORBIDDEN (kicked, left, other role), CONTACT_FULL.
   */
  admit(p: { contactId: string; participantId: string; role: Role }, now: number): ContactInfo {
    return this.#tx('admit', this.#flows.admit(p, now));
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
    const one = (p: (typeof ps)[number]): ContactInfo | LatchkeyError => {
      try {
        // Nested in the transaction below: a savepoint, rolled back alone when refused.
        return runSqlite(this.#db, this.#flows.admit(p, now));
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
    return this.#tx('contact', this.#flows.contact(contactId, now));
  }

  listContacts(opts: ListContactsOptions, now: number): ContactInfo[] {
    return this.#tx('list', this.#flows.list(opts, now));
  }

  /** @throws LatchkeyError NOT_FOUND, CONTACT_EXPIRED. */
  closeContact(contactId: string, now: number): ContactInfo {
    return this.#tx('close', this.#flows.close(contactId, now));
  }

  /** @throws LatchkeyError NOT_FOUND, CONTACT_EXPIRED. */
  setExpiry(contactId: string, expiresAt: number, now: number): ContactInfo {
    return this.#tx('expiry', this.#flows.setExpiry(contactId, expiresAt, now));
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
    return this.#tx(
      'kick',
      this.#flows.kick(contactId, participantId, now, opts.oweRotation === true),
    );
  }

  /** @throws LatchkeyError CONTACT_EXPIRED, FORBIDDEN, CONTACT_FULL. */
  invite(contactId: string, participantId: string, role: Role, now: number): ContactInfo {
    return this.#tx('invite', this.#flows.admit({ contactId, participantId, role }, now));
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
    return this.#tx(
      'transfer',
      this.#flows.transfer(contactId, from, to, now, opts.oweRotation === true),
    );
  }

  /** The rotation last owed by a kick or transfer of the contact (owed or done), if any. */
  owedRotation(contactId: string): OwedRotation | undefined {
    return this.#tx('owed', this.#flows.owed(contactId));
  }

  /** Every rotation still owed, oldest first (for the retry sweep). */
  owedRotations(): OwedRotation[] {
    return this.#tx('owed', this.#flows.allOwed());
  }

  /**
   * Records an owed rotation as done (`epoch` null: the contact had no key to rotate), unless a
   * later removal (another `seq`) owes a new one. Returns whether it settled the row.
   */
  rotationDone(contactId: string, seq: number, epoch: number | null): boolean {
    return this.#tx('owed', this.#flows.rotationDone(contactId, seq, epoch));
  }

  /** Counts a failed attempt at an owed rotation (the error's code and message, no secrets). */
  rotationFailed(contactId: string, seq: number, error: string): void {
    this.#tx('owed', this.#flows.rotationFailed(contactId, seq, error));
  }

  /** Marks contacts past their expiry as expired and returns their ids (for key retention). */
  expireDue(now: number): string[] {
    return this.#tx('expire', this.#flows.expireDue(now));
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
}
