/**
 * Store logic written once for a synchronous driver (better-sqlite3, whose transactions may not
 * span an `await`) and an asynchronous one (pg). The logic is a generator that yields each
 * query's result, value or promise; `runSync` feeds values straight back inside one SQLite
 * transaction, `runAsync` awaits them inside one PostgreSQL transaction. Every query goes through
 * `Sql` (sql.ts), so a flow never touches a driver.
 */

export type Awaitable<T> = T | PromiseLike<T>;

/** A piece of store logic; its result is `T`. Run it with runSync or runAsync. */
export type Flow<T> = Generator<unknown, T, unknown>;

/** Yields a driver's answer (value or promise) and resumes with the value. */
export function* wait<T>(answer: Awaitable<T>): Flow<T> {
  // The driver sends back exactly what this yield handed it, resolved.
  return (yield answer) as T;
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof (v as PromiseLike<unknown> | null)?.then === 'function';
}

/**
 * Runs a flow whose every answer is a value (a synchronous driver).
 * @throws TypeError when a step answers with a promise; whatever a step throws.
 */
export function runSync<T>(flow: Flow<T>): T {
  let r = flow.next();
  while (!r.done) {
    if (isThenable(r.value)) throw new TypeError('asynchronous step in a synchronous flow');
    r = flow.next(r.value);
  }
  return r.value;
}

/** Runs a flow, awaiting each answer. @throws whatever a step throws or rejects with. */
export async function runAsync<T>(flow: Flow<T>): Promise<T> {
  let r = flow.next();
  while (!r.done) {
    let value: unknown;
    try {
      value = await r.value;
    } catch (err) {
      r = flow.throw(err);
      continue;
    }
    r = flow.next(value);
  }
  return r.value;
}
