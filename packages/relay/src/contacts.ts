/**
 * Contact lifecycle and membership on the relay (issue 4; rules in @latchkey/protocol
 * `membership.ts`). `ContactStore` is the contract a backend meets next to `MessageStore`
 * (the SQLite store implements both over one database; PostgreSQL later). Every method is
 * atomic and takes the clock from its caller.
 *
 * `RetentionHook` is the seam for what happens to an expired contact's data: the relay marks the
 * contact expired, ends every connection of it and refuses it from then on, then calls the hook
 * once. The default deletes the ciphertext (shred.ts; the keys are destroyed by the key service);
 * a retention policy may delete it, archive it, or tell a key manager to crypto-shred.
 */
import type { ContactInfo, ContactState, Role } from '@latchkey/protocol';

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

/** What retention does once a contact has expired (see the module header). */
export interface RetentionHook {
  /** Called once per contact after the relay marked it expired and closed its connections. */
  contactExpired(contactId: string, expiredAt: number): Promise<void>;
}

/** Retention that keeps the stored ciphertext as it is (the default deletes it: shred.ts). */
export const KEEP_CIPHERTEXT: RetentionHook = { contactExpired: () => Promise.resolve() };

export function isContactStore(s: unknown): s is ContactStore {
  return typeof (s as Partial<ContactStore> | null)?.admit === 'function';
}
