/**
 * Group commit for `send` frames: every envelope submitted during one event-loop turn is
 * written in ONE store transaction (flushed on setImmediate), and each submitter's promise
 * settles only after that transaction committed — the relay's `ack` means "durable".
 * Batches run one after another, so seqs follow submission order across batches too. Between
 * two batches of a backlog the event loop gets a turn (setImmediate), so that a saturated relay
 * keeps reading and writing sockets instead of committing its whole queue in one stall.
 * With a store that commits on call (`commitsOnCall`: SQLite, whose `FULL` flushes the WAL after
 * the commit), the next batch is committed while the previous one is being flushed; each batch's
 * submitters still settle only once their own batch is durable, and in order.
 */
import { LatchkeyError, type SealedEnvelope } from '@latchkey/protocol';
import type { AppendResult, MessageStore } from './store.ts';

interface Pending {
  envelope: SealedEnvelope;
  resolve: (r: AppendResult) => void;
  reject: (e: LatchkeyError) => void;
}

export interface GroupCommitOptions {
  /** Most envelopes in one transaction; the rest waits for the next batch. Default 500. */
  maxBatch?: number;
  /** Called when a batch fails (for logs; never sees envelope content). */
  onError?: (err: LatchkeyError, batchSize: number) => void;
}

/** Batches appends into the fewest transactions that keep acks honest. */
export class GroupCommit {
  readonly #store: MessageStore;
  readonly #maxBatch: number;
  readonly #onError: ((err: LatchkeyError, batchSize: number) => void) | undefined;
  #queue: Pending[] = [];
  #scheduled = false;
  #running: Promise<void> = Promise.resolve();
  /** Batches committed and waiting for durability (stores that commit on call). */
  readonly #settling = new Set<Promise<void>>();

  constructor(store: MessageStore, opts: GroupCommitOptions = {}) {
    this.#store = store;
    this.#maxBatch = opts.maxBatch ?? 500;
    this.#onError = opts.onError;
  }

  /** Envelopes queued and not yet committed. */
  get pending(): number {
    return this.#queue.length;
  }

  /**
   * Queues an envelope for the next batch.
   * @returns its AppendResult once the batch committed.
   * @throws LatchkeyError UNAVAILABLE (rejection) when the batch's transaction failed; nothing
   *   of that batch was stored.
   */
  submit(envelope: SealedEnvelope): Promise<AppendResult> {
    return new Promise<AppendResult>((resolve, reject) => {
      this.#queue.push({ envelope, resolve, reject });
      this.#schedule();
    });
  }

  /** Resolves once everything submitted so far has been committed (or failed). Never throws. */
  async flush(): Promise<void> {
    while (this.#queue.length > 0 || this.#scheduled) {
      this.#scheduled = false;
      this.#running = this.#running.then(() => this.#drain());
      await this.#running;
    }
    await this.#running;
    await Promise.all(this.#settling);
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      if (!this.#scheduled) return; // a flush() took over
      this.#scheduled = false;
      this.#running = this.#running.then(() => this.#drain());
    });
  }

  /** Commits queued envelopes, batch by batch, until the queue is empty. */
  async #drain(): Promise<void> {
    for (let first = true; this.#queue.length > 0; first = false) {
      if (!first) await new Promise((resolve) => setImmediate(resolve));
      const batch = this.#queue.splice(0, this.#maxBatch);
      const settled = this.#commit(batch);
      if (!this.#store.commitsOnCall) {
        await settled;
        continue;
      }
      // Committed already: the next batch goes ahead while this one becomes durable.
      this.#settling.add(settled);
      void settled.then(() => this.#settling.delete(settled));
    }
  }

  /** Appends one batch and settles its submitters; never rejects. */
  async #commit(batch: Pending[]): Promise<void> {
    let results: AppendResult[];
    try {
      results = await this.#store.appendBatch(batch.map((p) => p.envelope));
      if (results.length !== batch.length) throw new Error('store returned a wrong result count');
    } catch (err) {
      const e = LatchkeyError.is(err, 'UNAVAILABLE')
        ? err
        : new LatchkeyError('UNAVAILABLE', 'message store unavailable', {
            cause: err,
            detail: err instanceof Error ? err.name : typeof err,
          });
      try {
        this.#onError?.(e, batch.length);
      } catch {
        // a failing logger must not strand the batch
      }
      for (const p of batch) p.reject(e);
      return;
    }
    batch.forEach((p, i) => p.resolve(results[i] as AppendResult));
  }
}
