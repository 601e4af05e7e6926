/**
 * A bound on how many scans run at once (each holds a decrypting download and a clamd
 * connection): `run` waits for a free slot, first come first served.
 */
export class Limiter {
  readonly #max: number;
  #running = 0;
  readonly #waiting: (() => void)[] = [];

  /** @throws RangeError unless `max` is a positive integer. */
  constructor(max: number) {
    if (!Number.isSafeInteger(max) || max < 1)
      throw new RangeError('max must be a positive integer');
    this.#max = max;
  }

  /** Scans running now. */
  get running(): number {
    return this.#running;
  }

  /** Scans waiting for a slot. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /** Runs `task` once a slot is free; the slot is released when it settles. */
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#running >= this.#max) {
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    } else {
      this.#running++;
    }
    try {
      return await task();
    } finally {
      const next = this.#waiting.shift();
      // The slot passes straight to the next waiter, so `running` never exceeds `max`.
      if (next) next();
      else this.#running--;
    }
  }
}
