/**
 * Storage quotas per contact and per participant (issue 13 item 9): how many messages and how
 * many bytes of sealed envelopes (their canonical JSON as stored) one contact, and one sender
 * within it, may keep on the relay. The store checks them in the same transaction as the append
 * (store.ts, pg-store.ts), so a refused send stores nothing and several relays on one PostgreSQL
 * share one count. Defaults and their reasons: docs/operations.md "Quotas and limits".
 */

export interface Quota {
  /** Messages one contact may store, all senders together. */
  contactMessages: number;
  /** Bytes of envelopes one contact may store, all senders together. */
  contactBytes: number;
  /** Messages one participant may store in one contact. */
  participantMessages: number;
  /** Bytes of envelopes one participant may store in one contact. */
  participantBytes: number;
}

const MiB = 1024 * 1024;

/**
 * Customer chat: a long conversation is a few hundred messages, a text envelope 1-25 KB. A
 * participant may use a quarter of its contact's quota, so that one visitor cannot fill the
 * contact and lock the agents out of answering.
 */
export const DEFAULT_QUOTA: Readonly<Quota> = {
  contactMessages: 10_000,
  contactBytes: 64 * MiB,
  participantMessages: 2_500,
  participantBytes: 16 * MiB,
};

/** What a contact or one of its senders has stored so far. */
export interface Usage {
  messages: number;
  bytes: number;
}

/**
 * The defaults with `over` on top, checked.
 * @throws RangeError when a limit is not a positive safe integer.
 */
export function resolveQuota(over: Partial<Quota> = {}): Quota {
  const q: Quota = { ...DEFAULT_QUOTA };
  for (const [k, v] of Object.entries(over) as [keyof Quota, number | undefined][])
    if (v !== undefined) q[k] = v;
  for (const [name, n] of Object.entries(q)) {
    if (!Number.isSafeInteger(n) || n < 1)
      throw new RangeError(`quota ${name} must be a positive integer`);
  }
  return q;
}

/** True when storing one more envelope of `bytes` would take the contact or the sender over `q`. */
export function overQuota(q: Quota, contact: Usage, sender: Usage, bytes: number): boolean {
  return (
    contact.messages + 1 > q.contactMessages ||
    contact.bytes + bytes > q.contactBytes ||
    sender.messages + 1 > q.participantMessages ||
    sender.bytes + bytes > q.participantBytes
  );
}
