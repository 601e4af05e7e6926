/**
 * Streams the key access log to where security teams look (docs/siem.md): a durable tailer per
 * destination reads the records after its cursor (table `key_access_log_cursors` in the log's own
 * database, so a restored backup rewinds both together) and hands them to a sink; the cursor
 * advances only to what the sink vouches for, so a crash or an outage of the destination loses
 * nothing (at-least-once: a record may arrive twice, receivers dedupe by seq).
 *
 * The tailer is woken by every append in this process (`KeyAccessLog.onAppend`), by its sink
 * (connected, drained, a record settled) and by a slow poll (records of another process, a retry
 * after a failure). It runs beside the key hand-outs and never blocks one: an append only queues
 * a wake-up.
 *
 * Several key services sharing the PostgreSQL state (issue 17) share one log and one cursor per
 * destination: `leadership` gives each destination to one of them at a time (the others stand
 * by and take over when it dies), so a record is not forwarded once per key service.
 *
 * Sinks: the webhook outbox (`key.accessed`, `key.denied`, `key.destroyed`, durable once queued)
 * here, and RFC 5424 syslog over TLS in access-syslog.ts.
 */
import {
  accessEventData,
  accessEventType,
  type AccessChainAlgorithm,
  type AccessLogStore,
  type ChainedAccessRecord,
  type Leadership,
} from '@latchkey/keys';
import type { WebhookService } from '@latchkey/webhooks';

/** What a sink answers for the records it was offered. */
export interface SinkProgress {
  /** The seq up to which delivery is assured: the tailer's durable cursor moves there. */
  assured: number;
  /**
   * The seq it took up to: the next offer starts after it. A sink that lost records it took
   * (a connection dropped) answers its `assured` here, so they are offered again.
   */
  taken: number;
  /** Why it stopped early (the tailer logs it and retries after a pause). */
  error?: string;
}

export interface AccessSink {
  /** The cursor's name (`webhooks`, `syslog`). */
  readonly name: string;
  /**
   * Takes `records` (those after `taken`, in order; possibly none, to collect progress).
   * Never throws: a failure is an `error` in the answer.
   */
  deliver(records: readonly ChainedAccessRecord[], taken: number): Promise<SinkProgress>;
  /** Called with the tailer's wake-up, for progress that comes later. */
  setWake?(wake: () => void): void;
  close(): Promise<void>;
}

export interface AccessTailerOptions {
  log: AccessLogStore;
  sink: AccessSink;
  /** Forward only while this process holds the sink's name (default: always; one process). */
  leadership?: Leadership;
  /** Slow poll (ms, default 5 s): appends by another process, retries after a failure. */
  pollMs?: number;
  /**
   * Records per read (default 500): what the tailer holds in memory at once, and what a sink
   * handles in one go before the event loop gets a turn (the webhook outbox syncs each event to
   * disk: give it fewer).
   */
  batch?: number;
  /** Problems worth a line (never a key or secret). */
  report?: (line: string) => void;
}

/** The durable tailer of one sink. */
export class AccessLogTailer {
  readonly #log: AccessLogStore;
  readonly #leadership: Leadership | undefined;
  readonly #sink: AccessSink;
  readonly #batch: number;
  readonly #report: (line: string) => void;
  readonly #poll: NodeJS.Timeout;
  readonly #unlisten: () => void;
  #cursor = 0;
  #taken = 0;
  #running: Promise<void> | undefined;
  #again = false;
  #closed = false;
  #lastError: string | undefined;
  #loaded = false;
  #progress = new Set<() => void>();

  /** Starts at once from the stored cursor. */
  constructor(opts: AccessTailerOptions) {
    this.#log = opts.log;
    this.#leadership = opts.leadership;
    this.#sink = opts.sink;
    this.#batch = opts.batch ?? 500;
    this.#report = opts.report ?? (() => undefined);
    this.#unlisten = opts.log.onAppend(() => this.wake());
    this.#sink.setWake?.(() => this.wake());
    this.#poll = setInterval(() => this.wake(), opts.pollMs ?? 5_000);
    this.#poll.unref();
    this.wake();
  }

  /** The seq up to which delivery is assured (the stored cursor). */
  get cursor(): number {
    return this.#cursor;
  }

  /** Runs a round soon; a round already running runs once more. */
  wake(): void {
    if (this.#closed) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => this.#round())
      .catch((err: unknown) => this.#fail(err instanceof Error ? err.message : String(err)))
      .finally(() => {
        this.#running = undefined;
        if (this.#again) {
          this.#again = false;
          this.wake();
        }
      });
  }

  #fail(message: string): void {
    // One line per distinct problem, not one per retry.
    if (message !== this.#lastError)
      this.#report(`access stream ${this.#sink.name}: ${message.slice(0, 300)}`);
    this.#lastError = message;
  }

  /** Loads the stored cursor (first round only). */
  async #load(): Promise<void> {
    if (this.#loaded) return;
    const stored = await this.#log.cursor(this.#sink.name);
    const head = (await this.#log.head()).seq;
    if (stored > head) {
      // The log is behind what was sent (a restored or replaced key database): go on from its
      // head, so new records are not skipped; the receiver's verifier reports the fork.
      this.#report(
        `access stream ${this.#sink.name}: cursor ${stored} is past the log's head ${head}; continuing after ${head}`,
      );
      await this.#log.setCursor(this.#sink.name, head);
    }
    this.#cursor = Math.min(stored, head);
    this.#taken = this.#cursor;
    this.#loaded = true;
  }

  async #round(): Promise<void> {
    if (this.#leadership !== undefined) {
      if (!(await this.#leadership.held(this.#sink.name))) {
        // Another process forwards; when this one takes over, it starts from the stored cursor.
        this.#loaded = false;
        return;
      }
    }
    await this.#load();
    for (;;) {
      if (this.#closed) return;
      const before = this.#taken;
      const records = await this.#log.listChained(before, this.#batch);
      const p = await this.#sink.deliver(records, before);
      if (p.assured > this.#cursor) {
        await this.#log.setCursor(this.#sink.name, p.assured);
        this.#cursor = p.assured;
        for (const fn of this.#progress) fn();
      }
      this.#taken = Math.max(p.taken, this.#cursor);
      if (p.error !== undefined) {
        this.#fail(p.error);
        return; // The poll (or the sink) wakes it again.
      }
      if (this.#lastError !== undefined) {
        this.#report(`access stream ${this.#sink.name}: delivering again`);
        this.#lastError = undefined;
      }
      // The sink lost records it had taken (a dropped connection): offer them again now.
      if (this.#taken < before) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        continue;
      }
      const last = records.at(-1)?.seq ?? this.#taken;
      // Caught up, or the sink took less than offered (it wakes the tailer when it can take more).
      if (records.length < this.#batch || this.#taken < last) return;
      // A backlog: let key hand-outs run between batches.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /** Resolves once the cursor is at least `seq` (tests, shutdown). */
  reached(seq: number): Promise<void> {
    if (this.#cursor >= seq) return Promise.resolve();
    return new Promise((resolve) => {
      const check = (): void => {
        if (this.#cursor < seq) return;
        this.#progress.delete(check);
        resolve();
      };
      this.#progress.add(check);
    });
  }

  /** Stops; what was not assured is offered again by the next start. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#poll);
    this.#unlisten();
    await this.#running;
    await this.#sink.close();
  }
}

/**
 * The webhook outbox as a sink: one event per record (`key.accessed` for granted, `key.denied`
 * for denied and unavailable, `key.destroyed`), queued durably in the outbox's transaction, so
 * each is assured once queued. An outbox that fails stops the round (retried on the next wake).
 */
export function webhookAccessSink(
  webhooks: Pick<WebhookService, 'outbox' | 'wake'>,
  alg: AccessChainAlgorithm,
  now: () => number = Date.now,
): AccessSink {
  return {
    name: 'webhooks',
    async deliver(records, taken) {
      let last = taken;
      let error: string | undefined;
      for (const r of records) {
        try {
          // null: no endpoint subscribes to it; nothing to keep.
          await webhooks.outbox.emit(accessEventType(r.outcome), accessEventData(r, alg), now());
        } catch (err) {
          error = `webhook outbox: ${err instanceof Error ? err.message : String(err)}`;
          break;
        }
        last = r.seq;
      }
      if (last > taken) webhooks.wake();
      return { assured: last, taken: last, ...(error === undefined ? {} : { error }) };
    },
    close: () => Promise.resolve(),
  };
}
