/**
 * Destroy notices of the wrapped key stores (docs/key-management.md "Which calls each action
 * makes"): when a store tombstones a contact (crypto-shredding), a wrapper that lives in an
 * external key manager is told (`KeyWrapper.destroyContact`, `POST /v1/keys/{keyId}/destroy`
 * with reason `destroy`), so that it refuses the contact for ever, even to someone holding a
 * copy of the wrapped keys. The notice is owed durably: the store records it in the tombstone's
 * own transaction (stores/sqlite.ts, stores/postgres.ts) and this class sends it, at once and then again
 * with a growing delay until the key manager takes it, also after a restart. A shred never waits
 * for it nor fails because of it: the keys are gone from the store either way.
 */

import { backoffDelay } from '@latchkey/protocol';

/** What a store keeps of owed notices. */
export interface DestroyNoticeLedger {
  /** Contacts whose notice is owed, oldest first (at most `limit`). */
  owed(limit: number): Promise<string[]>;
  /** The key manager took the notice of `contactId`. */
  settled(contactId: string): Promise<void>;
}

/** First retry delay after a failed round, doubled up to MAX_RETRY_MS. */
export const DESTROY_NOTICE_RETRY_MS = 5_000;
const MAX_RETRY_MS = 5 * 60_000;
/** Notices sent per round; the rest wait for the next. */
const ROUND = 100;

export class DestroyNotices {
  readonly #send: (contactId: string) => Promise<void>;
  readonly #ledger: DestroyNoticeLedger;
  readonly #retryMs: number;
  /** Failed rounds in a row. */
  #failures = 0;
  #timer: NodeJS.Timeout | undefined;
  #round: Promise<void> | undefined;
  #again = false;
  #closed = false;

  constructor(
    send: (contactId: string) => Promise<void>,
    ledger: DestroyNoticeLedger,
    opts: { retryMs?: number } = {},
  ) {
    this.#send = send;
    this.#ledger = ledger;
    this.#retryMs = opts.retryMs ?? DESTROY_NOTICE_RETRY_MS;
  }

  /** Sends every owed notice now (in the background); never throws. */
  kick(): void {
    if (this.#closed) return;
    if (this.#round !== undefined) {
      this.#again = true;
      return;
    }
    this.#round = this.#run().finally(() => {
      this.#round = undefined;
      if (this.#again) {
        this.#again = false;
        this.kick();
      }
    });
  }

  /** Resolves when the round in flight (if any) has finished. */
  async idle(): Promise<void> {
    while (this.#round !== undefined) await this.#round;
  }

  async #run(): Promise<void> {
    let failed = false;
    let owed: string[] = [];
    try {
      owed = await this.#ledger.owed(ROUND);
      for (const contactId of owed) {
        if (this.#closed) return;
        try {
          await this.#send(contactId);
          await this.#ledger.settled(contactId);
        } catch {
          // The key manager logs its own failures; try again later.
          failed = true;
        }
      }
    } catch {
      failed = true; // The store is unavailable: next round.
    }
    if (this.#closed) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (failed) {
      const delay = backoffDelay(this.#failures++, { baseMs: this.#retryMs, maxMs: MAX_RETRY_MS });
      this.#timer = setTimeout(() => this.kick(), delay);
      this.#timer.unref();
    } else {
      this.#failures = 0;
      if (owed.length === ROUND) this.#again = true;
    }
  }

  /** Stops retrying and waits for the round in flight. Owed notices stay owed. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.idle();
  }
}
