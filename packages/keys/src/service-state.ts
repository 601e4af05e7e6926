/**
 * The key service's own state, as its code uses it whatever holds it (issue 17): the membership
 * and deny table with the rotations removals owe, the key access log with its stream cursors,
 * the dates of epochs, and the lock that makes a contact's rotation happen once.
 *
 * Two backends keep it: SQLite files under the data directory for one machine (the classes in
 * access-store.ts, access-log.ts, epoch-clock.ts, whose methods answer at once) and one
 * PostgreSQL database shared by every key service of a cluster (`@latchkey/keys/postgres`
 * `openPgServiceState`, whose methods answer promises). Callers `await` every answer, so the
 * same code runs on both.
 */
import type { ContactInfo, LatchkeyError, Role } from '@latchkey/protocol';
import type { Awaitable, ListContactsOptions } from '@latchkey/storage';
import type {
  AccessChainAlgorithm,
  AccessRecord,
  ChainedAccessRecord,
  StoredAccessRecord,
} from './access-record.ts';
import type { OwedRotation } from './access-flows.ts';

export interface AccessLogHead {
  seq: number;
  hash: string;
}

export type AccessLogVerdict =
  { ok: true; count: number; head: AccessLogHead } | { ok: false; seq: number; reason: string };

/** A token holder asking to be admitted. */
export interface Admission {
  contactId: string;
  participantId: string;
  role: Role;
}

/** The membership and deny table (see access-store.ts for the rules of each method). */
export interface AccessTable {
  readonly maxParticipants: number;
  readonly contactTtlMs: number;
  admit(p: Admission, now: number): Awaitable<ContactInfo>;
  admitMany(ps: readonly Admission[], now: number): Awaitable<(ContactInfo | LatchkeyError)[]>;
  contact(contactId: string, now: number): Awaitable<ContactInfo | null>;
  listContacts(opts: ListContactsOptions, now: number): Awaitable<ContactInfo[]>;
  closeContact(contactId: string, now: number): Awaitable<ContactInfo>;
  setExpiry(contactId: string, expiresAt: number, now: number): Awaitable<ContactInfo>;
  kick(
    contactId: string,
    participantId: string,
    now: number,
    opts?: { oweRotation?: boolean },
  ): Awaitable<ContactInfo>;
  invite(contactId: string, participantId: string, role: Role, now: number): Awaitable<ContactInfo>;
  transfer(
    contactId: string,
    from: string,
    to: string,
    now: number,
    opts?: { oweRotation?: boolean },
  ): Awaitable<ContactInfo>;
  owedRotation(contactId: string): Awaitable<OwedRotation | undefined>;
  owedRotations(): Awaitable<OwedRotation[]>;
  rotationDone(contactId: string, seq: number, epoch: number | null): Awaitable<boolean>;
  rotationFailed(contactId: string, seq: number, error: string): Awaitable<void>;
  expireDue(now: number): Awaitable<string[]>;
  close(): Awaitable<void>;
}

/** The key access log (see access-log.ts for the chain). */
export interface AccessLogStore {
  readonly algorithm: AccessChainAlgorithm;
  /** Called after each record this process appends (records of other processes: poll). */
  onAppend(fn: (r: StoredAccessRecord) => void): () => void;
  append(r: AccessRecord): Awaitable<StoredAccessRecord>;
  appendMany(records: readonly AccessRecord[]): Awaitable<StoredAccessRecord[]>;
  list(opts?: {
    afterSeq?: number;
    contactId?: string;
    limit?: number;
  }): Awaitable<StoredAccessRecord[]>;
  listChained(afterSeq: number, limit?: number): Awaitable<ChainedAccessRecord[]>;
  cursor(name: string): Awaitable<number>;
  setCursor(name: string, seq: number): Awaitable<void>;
  head(): Awaitable<AccessLogHead>;
  verify(opts?: { head?: AccessLogHead }): Awaitable<AccessLogVerdict>;
  close(): Awaitable<void>;
}

/** When each epoch of a contact began (see epoch-clock.ts). */
export interface EpochTimes {
  since(contactId: string, epoch: number, now: number): Awaitable<number>;
  epochs(contactId: string): Awaitable<{ epoch: number; since: number }[]>;
  began(contactId: string, epoch: number, at: number): Awaitable<void>;
  forget(contactId: string): Awaitable<void>;
  close(): Awaitable<void>;
}

/**
 * Runs work on a contact one at a time: in this process (a promise chain per contact) and, with
 * the PostgreSQL state, across every process sharing the database (an advisory lock per contact
 * held while `fn` runs), so two key services receiving the same kick rotate once.
 */
export interface ContactLocks {
  run<T>(contactId: string, fn: () => Promise<T>): Promise<T>;
}

/**
 * Holds a named role (e.g. forwarding the access log to `webhooks`) in one process at a time:
 * `held()` answers whether this process holds it now, taking it when free. A process that dies
 * loses it, and another takes it over at its next try.
 */
export interface Leadership {
  held(name: string): Promise<boolean>;
  close(): Promise<void>;
}

/** In-process locks (SQLite state: one key service per data directory). */
export class LocalContactLocks implements ContactLocks {
  readonly #tails = new Map<string, Promise<unknown>>();

  run<T>(contactId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#tails.get(contactId) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.#tails.set(contactId, tail);
    void tail.then(() => {
      if (this.#tails.get(contactId) === tail) this.#tails.delete(contactId);
    });
    return run;
  }
}
