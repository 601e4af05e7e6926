/**
 * The contract of a contact store (contact lifecycle and membership; rules in @latchkey/protocol
 * `membership.ts`), one for the relay's message stores and the key service's access table, and
 * `FlowContactStore`, which meets it over `Membership` (membership.ts) for any store that can run
 * a flow in one of its transactions.
 */
import type { ContactInfo, Role } from '@latchkey/protocol';
import type { Flow } from './flow.ts';
import {
  Membership,
  type ContactPolicy,
  type ContactTables,
  type ListContactsOptions,
} from './membership.ts';
import type { Sql } from './sql.ts';

export type { ContactPolicy, ListContactsOptions } from './membership.ts';

/** The contract of a contact store. Every method is atomic and takes the clock from its caller. */
export interface ContactStore {
  /**
   * Admits a token holder into its contact: creates the contact (open, expiring after
   * `policy.contactTtlMs`) and the participant on first use.
   * @throws LatchkeyError CONTACT_EXPIRED, FORBIDDEN (left, kicked, other role), CONTACT_FULL,
   *   UNAVAILABLE when the store fails.
   */
  admit(
    p: { contactId: string; participantId: string; role: Role },
    now: number,
    policy: ContactPolicy,
  ): Promise<ContactInfo>;
  /** The contact with its participants (state as of `now`), or null when unknown. */
  contact(contactId: string, now: number): Promise<ContactInfo | null>;
  /** Contacts by id order, with their participants. */
  listContacts(opts: ListContactsOptions, now: number): Promise<ContactInfo[]>;
  /**
   * open -> closed (idempotent). No more sends; history stays readable.
   * @throws LatchkeyError NOT_FOUND, CONTACT_EXPIRED.
   */
  closeContact(contactId: string, now: number): Promise<ContactInfo>;
  /**
   * Sets when the contact expires; a time not after `now` expires it at once.
   * @throws LatchkeyError NOT_FOUND, CONTACT_EXPIRED (an expired contact stays expired).
   */
  setExpiry(contactId: string, expiresAt: number, now: number): Promise<ContactInfo>;
  /**
   * Marks a participant kicked: refused for this contact from then on. A contact or participant
   * not seen yet is recorded too (participant role null), so it cannot enter later.
   * @throws LatchkeyError CONTACT_EXPIRED.
   */
  kick(contactId: string, participantId: string, now: number): Promise<ContactInfo>;
  /**
   * Admits a participant ahead of its first connection (creating the contact if needed);
   * idempotent for an active participant of the same role.
   * @throws LatchkeyError CONTACT_EXPIRED, FORBIDDEN (left, kicked, other role), CONTACT_FULL.
   */
  invite(
    contactId: string,
    participantId: string,
    role: Role,
    now: number,
    policy: ContactPolicy,
  ): Promise<ContactInfo>;
  /**
   * `from` (an agent) leaves; `to` becomes an active agent in the same transaction (taking the
   * leaver's seat). Unknown contacts and leavers are recorded, so the leaver cannot enter later.
   * @throws LatchkeyError FORBIDDEN (`from` is not an agent; `to` left, was kicked or has
   *   another role), CONTACT_EXPIRED.
   */
  transfer(contactId: string, from: string, to: string, now: number): Promise<ContactInfo>;
  /** Marks every contact whose expiry has passed as expired; returns their ids. */
  expireDue(now: number): Promise<string[]>;
}

/**
 * A `ContactStore` over `Membership`: a store implements `runFlow` (one transaction of its
 * database, its failures worded its own way) and gets every contact method.
 */
export abstract class FlowContactStore implements ContactStore {
  readonly #tables: ContactTables;

  constructor(tables: ContactTables) {
    this.#tables = tables;
  }

  /**
   * Runs `flow` in one transaction (`write` false: a read that takes no write lock on SQLite).
   * @throws the store's own error for a storage failure; a LatchkeyError of the flow as is.
   */
  protected abstract runFlow<T>(
    what: string,
    flow: (sql: Sql) => Flow<T>,
    write: boolean,
  ): Promise<T>;

  #run<T>(what: string, flow: (m: Membership) => Flow<T>, write = true): Promise<T> {
    return this.runFlow(what, (sql) => flow(new Membership(sql, this.#tables)), write);
  }

  admit(
    p: { contactId: string; participantId: string; role: Role },
    now: number,
    policy: ContactPolicy,
  ): Promise<ContactInfo> {
    return this.#run('admit', (m) => m.admit(p.contactId, p.participantId, p.role, now, policy));
  }

  contact(contactId: string, now: number): Promise<ContactInfo | null> {
    return this.#run('contact', (m) => m.contact(contactId, now), false);
  }

  listContacts(opts: ListContactsOptions, now: number): Promise<ContactInfo[]> {
    return this.#run('list', (m) => m.list(opts, now), false);
  }

  closeContact(contactId: string, now: number): Promise<ContactInfo> {
    return this.#run('close', function* (m) {
      yield* m.close(contactId, now);
      return yield* m.info(contactId, now);
    });
  }

  setExpiry(contactId: string, expiresAt: number, now: number): Promise<ContactInfo> {
    return this.#run('expiry', function* (m) {
      yield* m.setExpiry(contactId, expiresAt, now);
      return yield* m.info(contactId, now);
    });
  }

  kick(contactId: string, participantId: string, now: number): Promise<ContactInfo> {
    return this.#run('kick', function* (m) {
      yield* m.kick(contactId, participantId, now);
      return yield* m.info(contactId, now);
    });
  }

  invite(
    contactId: string,
    participantId: string,
    role: Role,
    now: number,
    policy: ContactPolicy,
  ): Promise<ContactInfo> {
    return this.#run('invite', (m) => m.admit(contactId, participantId, role, now, policy));
  }

  transfer(contactId: string, from: string, to: string, now: number): Promise<ContactInfo> {
    return this.#run('transfer', function* (m) {
      yield* m.transfer(contactId, from, to, now);
      return yield* m.info(contactId, now);
    });
  }

  expireDue(now: number): Promise<string[]> {
    return this.#run('expire', (m) => m.expireDue(now));
  }
}

/** True for an object that keeps contacts (a message store may, or may not). */
export function isContactStore(s: unknown): s is ContactStore {
  return typeof (s as Partial<ContactStore> | null)?.admit === 'function';
}
