/**
 * What a database gives the wrapped key store (key-store.ts): the contract of its tables, each
 * method one atomic step, and the rules both databases share. The store keeps contacts, epochs,
 * tombstones and the wrapped bytes, per contact and epoch; the KeyWrapper (wrappers/) holds the
 * KEK. Implementations: sqlite.ts (the default, `<dataDir>/keys/keys.db`) and postgres.ts
 * (several key services sharing one database).
 */
import { Epoch, Id, LatchkeyError } from '@latchkey/protocol';
import { generateContentKey } from '@latchkey/crypto/wrap';
import type { KeyWrapper, WrapRequest } from '../key-wrapper.ts';

/** The contact row: its newest epoch and whether it was destroyed (a tombstone). */
export interface ContactRow {
  current: number;
  destroyed: boolean;
}

/** A contact row with the wrapped key of the epoch asked for (null when there is none). */
export interface ReadRow extends ContactRow {
  wrapped: Uint8Array | null;
}

export interface KeyRow {
  contactId: string;
  epoch: number;
  wrapped: Uint8Array;
}

/** A contact row as both databases store it. */
export interface ContactSql {
  current_epoch: number;
  destroyed_at: number | null;
}

export const contactOf = (c: ContactSql): ContactRow => ({
  current: c.current_epoch,
  destroyed: c.destroyed_at !== null,
});

/** A key row as both databases store it. */
export interface KeySql {
  contact_id: string;
  epoch: number;
  wrapped: Uint8Array;
}

export const keyRowOf = (r: KeySql): KeyRow => ({
  contactId: r.contact_id,
  epoch: r.epoch,
  wrapped: r.wrapped,
});

export interface GenerationRow {
  generation: number;
  state: 'current' | 'retiring';
  taintedAt: number | null;
}

/** The replacement a rewrap commits: every key, re-wrapped, and the new key-check value. */
export interface RewrapCommit {
  /** `contact/epoch/hex(old wrapped)` → new wrapped bytes; see `rewrapId`. */
  done: ReadonlyMap<string, Uint8Array>;
  /** New key-check value, or undefined to drop it (a wrapper that keeps none). */
  check: Uint8Array | undefined;
  /** Retire the current generation and start the next (false: an in-place rewrap). */
  newGeneration: boolean;
  now: number;
}

export interface KeyTable {
  /** The contact and the wrapped key of `epoch` (default: its current one), in one snapshot. */
  read(contactId: string, epoch: number | undefined): Promise<ReadRow | undefined>;
  contact(contactId: string): Promise<ContactRow | undefined>;
  /**
   * Creates the contact with `wrapped` as epoch 0 unless it exists (the first writer wins, a
   * loser keeps the winner's). Nothing is written when `valid()`, asked inside the transaction,
   * is false; then it answers false.
   */
  create(
    contactId: string,
    wrapped: Uint8Array,
    now: number,
    valid: () => boolean,
  ): Promise<boolean>;
  /**
   * Adds epoch `current + 1` when the contact's epoch is still `current` and `valid()`; false
   * when not (the caller retries).
   * @throws LatchkeyError NOT_FOUND for an unknown or destroyed contact.
   */
  addEpoch(
    contactId: string,
    current: number,
    wrapped: Uint8Array,
    now: number,
    valid: () => boolean,
  ): Promise<boolean>;
  /**
   * Deletes every key of the contact and leaves a tombstone; a removal taints the current
   * generation. With `oweNotice`, the first tombstone also owes the wrapper a destroy notice.
   */
  destroy(contactId: string, now: number, oweNotice: boolean): Promise<void>;
  allKeys(): Promise<KeyRow[]>;
  /**
   * Replaces every stored key by its entry in `c.done` when every current row has one, with
   * the check value and generation bookkeeping, in one transaction that no other writer can
   * interleave with; the number of keys replaced, or -1 when rows changed meanwhile.
   */
  commitRewrap(c: RewrapCommit): Promise<number>;
  /** The key-check value, storing `fresh` first when there is none yet. */
  keyCheck(fresh: Uint8Array): Promise<Uint8Array>;
  /** Generations not yet destroyed, oldest first. */
  generations(): Promise<GenerationRow[]>;
  markDestroyed(generation: number): Promise<void>;
  owedNotices(limit: number): Promise<string[]>;
  settleNotice(contactId: string): Promise<void>;
  /** Throws when the database does not answer. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Wrapping context of the key-check value. The dot makes it impossible as a contact id, so it
 * can never collide with a real contact's wrapped key.
 */
export const CHECK_CTX = { contactId: 'latchkey.kek-check', epoch: 0 } as const;
export const MAX_EPOCH = 2 ** 31 - 1;

/** The identity of one stored key in a rewrap round. */
export function rewrapId(r: KeyRow): string {
  return `${r.contactId}/${r.epoch}/${Buffer.from(r.wrapped).toString('hex')}`;
}

export const destroyed = (): LatchkeyError =>
  new LatchkeyError('NOT_FOUND', 'contact keys were destroyed');
export const unknownContact = (): LatchkeyError =>
  new LatchkeyError('NOT_FOUND', 'unknown contact');
export const unknownEpoch = (): LatchkeyError => new LatchkeyError('NOT_FOUND', 'unknown epoch');

/** Anything but a LatchkeyError as KEY_UNAVAILABLE with `message`; the cause stays for logs. */
export function unavailable(message: string, err: unknown): LatchkeyError {
  if (LatchkeyError.is(err)) return err;
  return new LatchkeyError('KEY_UNAVAILABLE', message, {
    cause: err,
    detail: err instanceof Error ? err.message : String(err),
  });
}

export function checkContactId(contactId: string): void {
  if (!Id.safeParse(contactId).success)
    throw new LatchkeyError('BAD_REQUEST', 'invalid contact id');
}

export function checkEpoch(epoch: number | undefined): void {
  if (epoch !== undefined && !Epoch.safeParse(epoch).success) {
    throw new LatchkeyError('BAD_REQUEST', 'invalid epoch');
  }
}

/**
 * A fresh content key wrapped by `wrapper`: generated by the wrapper itself when it can (data-key
 * style), else here; the raw key is zeroed before returning.
 */
export async function wrapFreshContentKey(
  wrapper: KeyWrapper,
  req: WrapRequest,
): Promise<Uint8Array> {
  if (wrapper.generate !== undefined) {
    const made = await wrapper.generate(req);
    made.key.fill(0);
    return made.wrapped;
  }
  const key = generateContentKey();
  try {
    return await wrapper.wrap(key, req);
  } finally {
    key.fill(0);
  }
}
