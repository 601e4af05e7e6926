/**
 * Contact lifecycle and membership on the relay (issue 4; rules in @latchkey/protocol
 * `membership.ts`). `ContactStore`, the contract a backend meets next to `MessageStore`, is
 * written once in @latchkey/storage (`contact-store.ts`, `membership.ts`) with the membership logic that both message
 * stores and the key service's access table run; every method is atomic and takes the clock from
 * its caller.
 *
 * `RetentionHook` is the seam for what happens to an expired contact's data: the relay marks the
 * contact expired, ends every connection of it and refuses it from then on, then calls the hook
 * once. The default deletes the ciphertext (shred.ts; the keys are destroyed by the key service);
 * a retention policy may delete it, archive it, or tell a key manager to crypto-shred.
 */
export {
  isContactStore,
  type ContactPolicy,
  type ContactStore,
  type ListContactsOptions,
} from '@latchkey/storage';

/** What retention does once a contact has expired (see the module header). */
export interface RetentionHook {
  /** Called once per contact after the relay marked it expired and closed its connections. */
  contactExpired(contactId: string, expiredAt: number): Promise<void>;
}

/** Retention that keeps the stored ciphertext as it is (the default deletes it: shred.ts). */
export const KEEP_CIPHERTEXT: RetentionHook = { contactExpired: () => Promise.resolve() };
