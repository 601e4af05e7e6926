/**
 * Group commit of the key access log (docs/key-management.md "Key access log"): the `granted`
 * records of the key requests handled in one turn of the event loop are appended in one
 * transaction (`KeyAccessLog.appendMany`), so a burst of joins costs one sync to disk per batch
 * instead of one per request (the log is `synchronous=FULL`). Each hand-out still waits for its
 * own record's commit before the key leaves: no record, no key.
 */
import type { AccessRecord, KeyAccessLog, StoredAccessRecord } from '@latchkey/keys';

interface Waiting {
  record: AccessRecord;
  resolve: (stored: StoredAccessRecord) => void;
  reject: (err: unknown) => void;
}

export class AccessBatch {
  readonly #log: KeyAccessLog;
  #queue: Waiting[] = [];

  constructor(log: KeyAccessLog) {
    this.#log = log;
  }

  /**
   * Appends `record` with the others asked for in this turn of the event loop; resolves once
   * their transaction has committed.
   * @throws LatchkeyError BAD_REQUEST for a malformed record, KEY_UNAVAILABLE when the log
   *   cannot be written (as `KeyAccessLog.append`).
   */
  append(record: AccessRecord): Promise<StoredAccessRecord> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ record, resolve, reject });
      if (this.#queue.length === 1) setImmediate(() => this.#flush());
    });
  }

  #flush(): void {
    const batch = this.#queue;
    this.#queue = [];
    let stored: StoredAccessRecord[];
    try {
      stored = this.#log.appendMany(batch.map((w) => w.record));
    } catch {
      // One bad record must not fail the others: each on its own, with its own outcome.
      for (const w of batch) {
        try {
          w.resolve(this.#log.append(w.record));
        } catch (err) {
          w.reject(err);
        }
      }
      return;
    }
    batch.forEach((w, i) => w.resolve(stored[i]!));
  }
}
