/**
 * What the two message stores (store.ts, pg-store.ts) share besides the contact methods
 * (@latchkey/storage `FlowContactStore`): the clock, a new contact's lifetime, the counters and
 * the closed state.
 */
import { DEFAULT_CONTACT_TTL_MS, LatchkeyError } from '@latchkey/protocol';
import { FlowContactStore } from '@latchkey/storage';
import type { StoreStats } from './message-store.ts';

/**
 * A new contact's lifetime, checked.
 * @throws RangeError when not a positive integer.
 */
export function contactTtl(ms: number = DEFAULT_CONTACT_TTL_MS): number {
  if (!Number.isSafeInteger(ms) || ms <= 0)
    throw new RangeError('contactTtlMs must be a positive integer');
  return ms;
}

export abstract class StoreBase extends FlowContactStore {
  /** Clock for `stored_at` (ms). */
  protected readonly now: () => number;
  /** Lifetime of a contact first created by an append (ms). */
  protected readonly contactTtlMs: number;
  readonly #stats: StoreStats = { transactions: 0, appended: 0 };
  #closed = false;

  /** @throws RangeError when `contactTtlMs` is not a positive integer. */
  constructor(opts: { now?: () => number; contactTtlMs?: number }) {
    const ttl = contactTtl(opts.contactTtlMs);
    // Both schemas keep the head seq on the contact row.
    super({ contactTtlMs: ttl, newContact: { head_seq: 0 } });
    this.now = opts.now ?? Date.now;
    this.contactTtlMs = ttl;
  }

  get stats(): StoreStats {
    return { ...this.#stats };
  }

  /** Counts one committed append transaction that stored `appended` envelopes. */
  protected committed(appended: number): void {
    this.#stats.transactions++;
    this.#stats.appended += appended;
  }

  protected get closed(): boolean {
    return this.#closed;
  }

  /** Marks the store closed; false when it already was. */
  protected markClosed(): boolean {
    const first = !this.#closed;
    this.#closed = true;
    return first;
  }

  /** @throws LatchkeyError UNAVAILABLE once the store is closed. */
  protected assertOpen(): void {
    if (this.#closed) throw new LatchkeyError('UNAVAILABLE', 'message store closed');
  }
}
