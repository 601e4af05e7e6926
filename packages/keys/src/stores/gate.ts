/** The wrapped key store's in-process gate (key-store.ts). */

/**
 * In-process gate between ordinary calls (shared) and the last step of a rewrap (exclusive),
 * so that no call pairs stored bytes with the other wrapper while the rewrap commits and swaps.
 */
export class Gate {
  #readers = 0;
  #writer: Promise<void> | null = null;
  #drained: (() => void) | null = null;

  async shared<T>(fn: () => Promise<T>): Promise<T> {
    while (this.#writer !== null) await this.#writer;
    this.#readers++;
    try {
      return await fn();
    } finally {
      this.#readers--;
      if (this.#readers === 0) this.#drained?.();
    }
  }

  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    while (this.#writer !== null) await this.#writer;
    let release = (): void => undefined;
    this.#writer = new Promise<void>((r) => {
      release = r;
    });
    try {
      if (this.#readers > 0) {
        await new Promise<void>((r) => {
          this.#drained = r;
        });
      }
      this.#drained = null;
      return await fn();
    } finally {
      this.#writer = null;
      release();
    }
  }
}
