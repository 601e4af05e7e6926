/**
 * A small typed event emitter that keeps what it emits while nobody listens: an event fired
 * before the application subscribed (for example while `connect()` is still pending) waits,
 * in order, for the first listener of its kind instead of vanishing. Bounded: past `limit`
 * waiting events of one kind the oldest are dropped.
 */
type Listener<T> = (value: T) => void;

export class Emitter<E extends Record<string, unknown>> {
  readonly #listeners = new Map<keyof E, Set<Listener<never>>>();
  readonly #waiting = new Map<keyof E, unknown[]>();
  readonly #kept: ReadonlySet<keyof E>;
  readonly #limit: number;

  /** @param kept - The kinds kept while unheard (others are dropped, e.g. state changes). */
  constructor(kept: readonly (keyof E)[], limit = 10_000) {
    this.#kept = new Set(kept);
    this.#limit = limit;
  }

  on<K extends keyof E>(event: K, listener: Listener<E[K]>): () => void {
    let set = this.#listeners.get(event);
    if (!set) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    set.add(listener as Listener<never>);
    const waiting = this.#waiting.get(event);
    if (waiting) {
      this.#waiting.delete(event);
      for (const v of waiting) this.#call(listener, v as E[K]);
    }
    return () => set.delete(listener as Listener<never>);
  }

  emit<K extends keyof E>(event: K, value: E[K]): void {
    const set = this.#listeners.get(event);
    if (!set || set.size === 0) {
      if (!this.#kept.has(event)) return;
      let waiting = this.#waiting.get(event);
      if (!waiting) {
        waiting = [];
        this.#waiting.set(event, waiting);
      }
      waiting.push(value);
      if (waiting.length > this.#limit) waiting.shift();
      return;
    }
    for (const l of [...set]) this.#call(l as Listener<E[K]>, value);
  }

  #call<T>(l: Listener<T>, value: T): void {
    try {
      l(value);
    } catch {
      // A listener's bug must not break delivery to the others.
    }
  }
}
