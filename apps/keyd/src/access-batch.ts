/**
 * Group commits of the key service's two `synchronous=FULL` writes per request (docs/key-management.md
 * "Key access log"): the admissions to the access table (a participant's first request writes
 * its membership) and the `granted` records of the key access log. What the requests handled in
 * one turn of the event loop ask for is written in one transaction, so a burst of joins costs one
 * sync to disk per batch instead of one per request. Each request still waits for its own
 * commit: no membership, no key; no record, no key.
 */
import type {
  AccessLogStore,
  AccessRecord,
  AccessTable,
  Admission,
  StoredAccessRecord,
} from '@latchkey/keys';
import type { Awaitable } from '@latchkey/keys';
import { LatchkeyError, type ContactInfo } from '@latchkey/protocol';

interface Waiting<I, O> {
  item: I;
  resolve: (out: O) => void;
  reject: (err: unknown) => void;
}

/** Items submitted in one loop turn, committed together by `many`, each resolved alone. */
export class GroupCommit<I, O> {
  readonly #many: (items: I[]) => Awaitable<(O | LatchkeyError)[]>;
  readonly #one: (item: I) => Awaitable<O>;
  #queue: Waiting<I, O>[] = [];

  /**
   * @param many - commits all items in one transaction; per item its result or the error that
   *   refused it alone.
   * @param one - commits one item on its own (after `many` failed as a whole).
   */
  constructor(
    many: (items: I[]) => Awaitable<(O | LatchkeyError)[]>,
    one: (item: I) => Awaitable<O>,
  ) {
    this.#many = many;
    this.#one = one;
  }

  /** Resolves once the transaction holding `item` has committed. */
  submit(item: I): Promise<O> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      if (this.#queue.length === 1) setImmediate(() => void this.#flush());
    });
  }

  async #flush(): Promise<void> {
    const batch = this.#queue;
    this.#queue = [];
    let results: (O | LatchkeyError)[];
    try {
      results = await this.#many(batch.map((w) => w.item));
    } catch {
      // One bad item must not fail the others: each on its own, with its own outcome.
      for (const w of batch) {
        try {
          w.resolve(await this.#one(w.item));
        } catch (err) {
          w.reject(err);
        }
      }
      return;
    }
    batch.forEach((w, i) => {
      const r = results[i]!;
      if (r instanceof LatchkeyError) w.reject(r);
      else w.resolve(r);
    });
  }
}

/**
 * Access-log records, appended in batches (`AccessLogStore.appendMany`).
 * @throws (rejects) LatchkeyError BAD_REQUEST for a malformed record, KEY_UNAVAILABLE when the
 *   log cannot be written, as `AccessLogStore.append`.
 */
export function accessLogBatch(log: AccessLogStore): GroupCommit<AccessRecord, StoredAccessRecord> {
  return new GroupCommit(
    (records) => log.appendMany(records),
    (record) => log.append(record),
  );
}

/**
 * Admissions of token holders, in batches (`AccessTable.admitMany`), dated when committed.
 * @throws (rejects) as `AccessTable.admit`.
 */
export function admissionBatch(access: AccessTable): GroupCommit<Admission, ContactInfo> {
  return new GroupCommit(
    (ps) => access.admitMany(ps, Date.now()),
    (p) => access.admit(p, Date.now()),
  );
}
