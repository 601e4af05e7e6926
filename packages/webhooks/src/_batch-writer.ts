/**
 * Writes items in the order they were pushed, a batch at a time: while one batch is being
 * written, later items gather for the next. Each push resolves with its item's result (or
 * rejects with its batch's error). The PostgreSQL outbox queues events through it, so one
 * process's events keep their order and share transactions.
 */
export class BatchWriter<I, O> {
  readonly #write: (items: I[]) => Promise<O[]>;
  readonly #max: number;
  readonly #maxQueued: number;
  #queue: { item: I; resolve: (o: O) => void; reject: (err: unknown) => void }[] = [];
  #writing: Promise<void> | undefined;

  /**
   * `write` gets up to `max` items and answers one result per item, in order; at most
   * `maxQueued` items wait (a database that hangs must not grow memory without bound).
   */
  constructor(write: (items: I[]) => Promise<O[]>, max: number, maxQueued: number) {
    this.#write = write;
    this.#max = max;
    this.#maxQueued = maxQueued;
  }

  /** @throws (rejects) RangeError when `maxQueued` items are already waiting. */
  push(item: I): Promise<O> {
    if (this.#queue.length >= this.#maxQueued)
      return Promise.reject(new RangeError('too many events waiting to be written'));
    return new Promise((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      this.#writing ??= this.#drain();
    });
  }

  /** Resolves once every item pushed so far is written (or failed). */
  async flush(): Promise<void> {
    while (this.#writing) await this.#writing;
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue.splice(0, this.#max);
        try {
          const out = await this.#write(batch.map((w) => w.item));
          batch.forEach((w, i) => w.resolve(out[i] as O));
        } catch (err) {
          for (const w of batch) w.reject(err);
        }
      }
    } finally {
      this.#writing = undefined;
    }
  }
}
