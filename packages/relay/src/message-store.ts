/**
 * The message store contract: the relay's durable, per-contact ordered log of sealed envelopes
 * (DESIGN.md "Envelope (what the relay stores)"). Backends: `SqliteMessageStore` (store.ts, the
 * embedded default) and `PgMessageStore` (pg-store.ts, `@latchkey/relay/postgres`, for several
 * relays); the store contract tests run against both.
 */
import type { SealedEnvelope, StoredEnvelope } from '@latchkey/protocol';
import type { Quota } from './quota.ts';

/** Outcome of appending one envelope within a batch. */
export type AppendResult =
  | {
      ok: true;
      /** The envelope's per-contact sequence number (the original one for a duplicate). */
      seq: number;
      /** True when this msgId was already stored by the same sender with the same envelope. */
      duplicate: boolean;
      /** The stored envelope with its seq. */
      envelope: StoredEnvelope;
      /** The envelope's canonical JSON as stored (without seq): deliver frames reuse it. */
      json?: string;
    }
  | {
      ok: false;
      /**
       * CONFLICT: the msgId is taken by another sender or by a different envelope.
       * CONTACT_CLOSED / CONTACT_EXPIRED: the contact takes no more messages.
       * FORBIDDEN: the sender left or was removed from the contact.
       * QUOTA_EXCEEDED: storing it would take the contact or the sender over the quota.
       */
      code: 'CONFLICT' | 'CONTACT_CLOSED' | 'CONTACT_EXPIRED' | 'FORBIDDEN' | 'QUOTA_EXCEEDED';
    };

/** One page of a contact's log. */
export interface HistoryPage {
  /** Envelopes with seq > since, in seq order. */
  envelopes: StoredEnvelope[];
  /** Highest seq stored for the contact (0: none). */
  head: number;
  /** True when more envelopes follow the last one returned. */
  more: boolean;
}

/** Counters a store exposes for monitoring and tests. */
export interface StoreStats {
  /** Write transactions committed (one per appendBatch that succeeded). */
  transactions: number;
  /** Envelopes newly stored (duplicates not counted). */
  appended: number;
}

/**
 * A durable, per-contact ordered log of sealed envelopes. Seqs are gap-free per contact and
 * start at 1. Implementations must make `appendBatch` all-or-nothing.
 */
export interface MessageStore {
  /**
   * Stores a batch of envelopes in ONE transaction, in order, and returns one result per input.
   * A duplicate (same contact, msgId, sender and envelope) returns the original seq; a msgId
   * reused by another sender or with another envelope yields `{ ok: false, code: 'CONFLICT' }`
   * without aborting the batch. With a `quota` (quota.ts), an envelope that would take its
   * contact or its sender over it yields `{ ok: false, code: 'QUOTA_EXCEEDED' }` and is not
   * stored; the check and the append are one transaction, and a duplicate is answered first.
   * @throws LatchkeyError UNAVAILABLE when the transaction could not be committed; then nothing
   *   of the batch is stored.
   */
  appendBatch(envelopes: readonly SealedEnvelope[], quota?: Quota): Promise<AppendResult[]>;
  /**
   * Highest seq stored for a contact (0 when none).
   * @throws LatchkeyError UNAVAILABLE when the store cannot be read.
   */
  head(contactId: string): Promise<number>;
  /**
   * Envelopes of a contact with seq > since, in order, at most `limit`.
   * @throws LatchkeyError UNAVAILABLE when the store cannot be read.
   */
  history(contactId: string, since: number, limit: number): Promise<HistoryPage>;
  /** Counters since the store was opened. */
  readonly stats: StoreStats;
  /**
   * True when `appendBatch` commits (and assigns its seqs) synchronously, before it returns its
   * promise, and the promise only waits for durability (SQLite under `FULL`): the group commit
   * may then commit the next batch while the previous one is being flushed to disk.
   */
  readonly commitsOnCall?: boolean;
  /** Closes the store; further calls fail with UNAVAILABLE. */
  close(): Promise<void>;
}
