/**
 * The webhook service: the outbox plus a delivery worker. `emit` queues an event durably (and
 * never throws into its caller: an event that cannot be queued is logged); the worker sends each
 * endpoint's head delivery, signed with the endpoint's current secret(s), records the outcome and
 * sleeps until the next delivery is due. At most one call per endpoint is in flight, which keeps
 * per-endpoint order. Clock and timers are injectable, so tests can drive retries.
 *
 * The outbox is the SQLite one of this process (outbox.ts) or the PostgreSQL one shared by
 * several processes (outbox-pg.ts): there every delivery is claimed under a lease before the
 * call, and the worker also wakes every `pollMs` for events other processes queued.
 *
 * Longer than 400 lines: the worker's in-flight set, timers, claims and pump share one class's
 * private state; the outbox logic itself is in the outbox-* files.
 */
import { randomBytes } from 'node:crypto';
import {
  LatchkeyError,
  type WebhookEndpointInfo,
  type WebhookError,
  type WebhookEventType,
  type WebhookTestResponse,
  type WebhookUrlWarning,
} from '@latchkey/protocol';
import { checkTarget } from './_check-url.ts';
import { deliver, type DeliveryOptions, type DeliveryResult } from './deliver.ts';
import { TEST_EVENT_TYPE, type EventData } from './events.ts';
import { WebhookOutbox, type OutboxOptions } from './outbox.ts';
import type { DueDelivery, WebhookOutboxStore } from './outbox-api.ts';
import { PgWebhookOutbox, type PgOutboxOptions } from './outbox-pg.ts';
import { signWebhook } from './signing.ts';

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface WebhookLogEvent {
  event: string;
  [field: string]: string | number | boolean | undefined;
}

export interface WebhookServiceOptions {
  /**
   * An outbox (the caller keeps ownership unless `ownsOutbox`), or where to open one (the
   * service owns it): `{ path }` a SQLite file of this process, `{ url, keyFile | secretKey }`
   * a PostgreSQL database shared by several processes (docs/webhooks.md "Several processes").
   */
  outbox: WebhookOutboxStore | OutboxOptions | PgOutboxOptions;
  /** Close a given outbox instance with the service (default false). */
  ownsOutbox?: boolean;
  delivery?: DeliveryOptions;
  /** Clock in ms (default Date.now). */
  now?: () => number;
  /** Timers for the worker's sleeps (default the global ones, unref'd). */
  timers?: Timers;
  /** Calls in flight at once across endpoints (default 8). */
  concurrency?: number;
  /** Delivered events are deleted after this long (default 7 days). */
  keepDeliveredMs?: number;
  /** Start the worker at once (default true). */
  autoStart?: boolean;
  log?: (e: WebhookLogEvent) => void;
  /** Replaces the HTTP call (tests only). */
  send?: (url: string, headers: Record<string, string>, body: string) => Promise<DeliveryResult>;
}

const MAX_SLEEP_MS = 60_000;
const DEFAULT_TIMEOUT_MS = 10_000;

const defaultTimers: Timers = {
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

function isOutbox(
  o: WebhookOutboxStore | OutboxOptions | PgOutboxOptions,
): o is WebhookOutboxStore {
  return typeof (o as Partial<WebhookOutboxStore>).due === 'function';
}

function openOutbox(o: OutboxOptions | PgOutboxOptions): WebhookOutboxStore {
  return 'url' in o ? new PgWebhookOutbox(o) : new WebhookOutbox(o);
}

export class WebhookService {
  readonly outbox: WebhookOutboxStore;
  readonly #ownsOutbox: boolean;
  readonly #now: () => number;
  readonly #timers: Timers;
  readonly #concurrency: number;
  readonly #keepDeliveredMs: number;
  readonly #log: (e: WebhookLogEvent) => void;
  readonly #send: (
    url: string,
    headers: Record<string, string>,
    body: string,
  ) => Promise<DeliveryResult>;
  readonly #delivery: DeliveryOptions;
  readonly #busy = new Map<string, Promise<void>>();
  readonly #maxSleepMs: number;
  readonly #timeoutMs: number;
  #timer: unknown;
  #wakeQueued = false;
  /** A pump is looking for due deliveries (it awaits their secrets); another waits for it. */
  #pumping = false;
  #pumpAgain = false;
  /** The pump running now (close waits for it), and claims being given back. */
  #pumpDone: Promise<void> = Promise.resolve();
  readonly #releases = new Set<Promise<void>>();
  #running = false;
  #closed = false;
  #lastPrune = 0;

  /**
   * With PostgreSQL options the outbox opens in the background: await `ready()` to know it did.
   * @throws LatchkeyError UNAVAILABLE when the outbox cannot be opened (SQLite).
   * @throws WebhookOutboxKeyError MISSING for PostgreSQL options without a key.
   * @throws RangeError when the outbox's lease is under twice the delivery timeout.
   */
  constructor(opts: WebhookServiceOptions) {
    const given = isOutbox(opts.outbox);
    this.#ownsOutbox = !given || opts.ownsOutbox === true;
    this.outbox = isOutbox(opts.outbox) ? opts.outbox : openOutbox(opts.outbox);
    this.#timeoutMs = opts.delivery?.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#maxSleepMs = Math.min(MAX_SLEEP_MS, this.outbox.pollMs ?? MAX_SLEEP_MS);
    const lease = this.outbox.leaseMs;
    if (lease !== undefined && lease < 2 * this.#timeoutMs) {
      if (!given) void this.outbox.close();
      throw new RangeError(
        `the outbox lease (${lease} ms) must be at least twice the delivery timeout (${this.#timeoutMs} ms)`,
      );
    }
    this.#now = opts.now ?? Date.now;
    this.#timers = opts.timers ?? defaultTimers;
    this.#concurrency = opts.concurrency ?? 8;
    this.#keepDeliveredMs = opts.keepDeliveredMs ?? 7 * 86_400_000;
    const log = opts.log;
    this.#log = (e) => {
      try {
        log?.(e);
      } catch {
        // a failing logger must not stop deliveries
      }
    };
    const delivery = opts.delivery ?? {};
    this.#delivery = delivery;
    this.#send = opts.send ?? ((url, headers, body) => deliver(url, headers, body, delivery));
    if (opts.autoStart ?? true) this.start();
  }

  /**
   * Resolves once the outbox is open (PostgreSQL: migrated, key checked).
   * @throws WebhookOutboxKeyError MISMATCH, SchemaTooNewError, LatchkeyError UNAVAILABLE.
   */
  async ready(): Promise<void> {
    await this.outbox.ready?.();
  }

  /**
   * Queues an event for every subscribed endpoint and wakes the worker. Never throws: a failure
   * is logged (`webhook-emit-failed`) and null returned. SQLite: queued when this returns; null
   * when no endpoint wants it. PostgreSQL: written in the background in call order; the id the
   * event gets is returned at once (`emitAsync` or `flush` wait for the write).
   */
  emit<T extends WebhookEventType>(type: T, data: EventData<T>): string | null {
    if (this.#closed) return null;
    const id = `evt_${randomBytes(16).toString('base64url')}`;
    try {
      const r = this.outbox.emit(type, data, this.#now(), id);
      if (!isPromise(r)) {
        if (r !== null) this.wake();
        return r;
      }
      void r.then(
        (queued) => {
          if (queued !== null) this.wake();
        },
        (err: unknown) => this.#emitFailed(type, err),
      );
      return id;
    } catch (err) {
      this.#emitFailed(type, err);
      return null;
    }
  }

  /**
   * Queues an event and resolves once it is written: its id, or null when no endpoint wants it.
   * @throws whatever the outbox throws (a ZodError for bad data, LatchkeyError UNAVAILABLE).
   */
  async emitAsync<T extends WebhookEventType>(type: T, data: EventData<T>): Promise<string | null> {
    const id = await this.outbox.emit(type, data, this.#now());
    if (id !== null) this.wake();
    return id;
  }

  /** Resolves once every event emitted so far is written (PostgreSQL; at once on SQLite). */
  async flush(): Promise<void> {
    await this.outbox.flush?.();
  }

  #emitFailed(type: string, err: unknown): void {
    this.#log({
      event: 'webhook-emit-failed',
      type,
      detail: err instanceof Error ? err.message.slice(0, 200) : 'unknown',
    });
  }

  /** Starts the worker (idempotent). */
  start(): void {
    if (this.#running || this.#closed) return;
    this.#running = true;
    this.wake();
  }

  /** Looks for due deliveries soon (after the current tick). */
  wake(): void {
    if (!this.#running || this.#wakeQueued) return;
    this.#wakeQueued = true;
    queueMicrotask(() => {
      this.#wakeQueued = false;
      this.#pump();
    });
  }

  /** Starts every due delivery (within the concurrency limit) and sleeps until the next. */
  #pump(): void {
    if (this.#closed || !this.#running) return;
    if (this.#pumping) {
      this.#pumpAgain = true;
      return;
    }
    this.#pumping = true;
    this.#pumpDone = this.#pumpOnce().finally(() => {
      this.#pumping = false;
      if (this.#pumpAgain) {
        this.#pumpAgain = false;
        this.#pump();
      }
    });
  }

  async #pumpOnce(): Promise<void> {
    if (this.#timer !== undefined) {
      this.#timers.clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    const now = this.#now();
    let nextAt: number | null;
    try {
      await this.#maybePrune(now);
      const r = await this.outbox.due(now, new Set(this.#busy.keys()), this.#free());
      if (this.#closed || !this.#running) {
        // Stopping: claims (PostgreSQL) go back at once rather than after their lease.
        for (const d of r.due) this.#release(d);
        return;
      }
      nextAt = r.nextAt;
      for (const d of r.due) {
        if (this.#busy.size >= this.#concurrency) this.#release(d);
        else this.#start(d);
      }
    } catch (err) {
      this.#log({
        event: 'webhook-worker-failed',
        detail: err instanceof Error ? err.message.slice(0, 200) : 'unknown',
      });
      nextAt = now + 5_000;
    }
    if (!this.#running || this.#timer !== undefined) return;
    // Sleep until the next due delivery (bounded, so a changed clock is noticed); in-flight
    // calls wake the worker when they finish.
    const max = this.#maxSleepMs;
    const sleep = nextAt === null ? max : Math.min(max, Math.max(0, nextAt - now));
    this.#timer = this.#timers.setTimeout(() => {
      this.#timer = undefined;
      this.#pump();
    }, sleep);
  }

  async #maybePrune(now: number): Promise<void> {
    if (now - this.#lastPrune < 3_600_000) return;
    this.#lastPrune = now;
    await this.outbox.prune(now - this.#keepDeliveredMs);
  }

  /** Calls that may start now. */
  #free(): number {
    return Math.max(0, this.#concurrency - this.#busy.size);
  }

  #start(d: DueDelivery): void {
    // A pump and runDue may both have found it due while they awaited its secrets (SQLite; a
    // PostgreSQL claim is given up so that it is due again at once).
    if (this.#busy.has(d.endpointId) || this.#closed) {
      this.#release(d);
      return;
    }
    const p = this.#attempt(d).finally(() => {
      this.#busy.delete(d.endpointId);
      this.wake();
    });
    this.#busy.set(d.endpointId, p);
  }

  #release(d: DueDelivery): void {
    if (d.leaseUntil === undefined || !this.outbox.release) return;
    const p = this.outbox
      .release(d.endpointId, d.eventSeq)
      .catch((err: unknown) =>
        this.#log({
          event: 'webhook-release-failed',
          detail: err instanceof Error ? err.message.slice(0, 200) : 'unknown',
        }),
      )
      .finally(() => this.#releases.delete(p));
    this.#releases.add(p);
  }

  async #attempt(d: DueDelivery): Promise<void> {
    const sentAt = this.#now();
    // A claim that would run out before the call's deadline is given up, not used: another
    // process could take it over while this call is still in flight.
    if (d.leaseUntil !== undefined && sentAt + this.#timeoutMs >= d.leaseUntil) {
      this.#release(d);
      return;
    }
    const headers = signWebhook(d.secrets, d.eventId, Math.floor(sentAt / 1000), d.payload);
    let r: DeliveryResult;
    try {
      r = await this.#send(d.url, headers, d.payload);
    } catch (err) {
      r = {
        ok: false,
        status: null,
        code: 'CONNECT_FAILED',
        message: err instanceof Error ? err.message : 'failed',
      };
    }
    const now = this.#now();
    try {
      if (r.ok) {
        const recorded = await this.outbox.delivered(d.endpointId, d.eventSeq, now);
        this.#log({
          // claim-lost: another process took the delivery over (PostgreSQL, after the lease).
          event: recorded === false ? 'webhook-claim-lost' : 'webhook-delivered',
          endpoint: d.endpointId,
          eventId: d.eventId,
          status: r.status,
        });
      } else {
        const dead = await this.outbox.failed(
          d.endpointId,
          d.eventSeq,
          { code: r.code, message: r.message, at: now },
          now,
        );
        this.#log({
          event: dead ? 'webhook-dead' : 'webhook-retry',
          endpoint: d.endpointId,
          eventId: d.eventId,
          code: r.code,
          attempt: d.attempts + 1,
        });
      }
    } catch (err) {
      this.#log({
        event: 'webhook-record-failed',
        detail: err instanceof Error ? err.message.slice(0, 200) : 'unknown',
      });
    }
  }

  /**
   * Runs one round now: starts every due delivery and waits for all calls in flight. Tests and
   * the admin "flush" use it; the worker does the same on its own timer.
   */
  async runDue(): Promise<void> {
    if (this.#closed) return;
    const now = this.#now();
    const r = await this.outbox.due(now, new Set(this.#busy.keys()), this.#free());
    for (const d of r.due) this.#start(d);
    await this.idle();
  }

  /** Resolves once no call is in flight. */
  async idle(): Promise<void> {
    while (this.#busy.size > 0) await Promise.all([...this.#busy.values()]);
  }

  /**
   * Sends one signed `webhook.test` call to the endpoint at once (outside the queue) and records
   * the outcome in its status.
   * @throws LatchkeyError NOT_FOUND.
   */
  async test(endpointId: string): Promise<WebhookTestResponse> {
    const now = this.#now();
    const info = await this.outbox.endpoint(endpointId, now);
    if (!info) throw new LatchkeyError('NOT_FOUND', 'no such webhook endpoint');
    const id = `evt_test_${randomBytes(12).toString('base64url')}`;
    const body = JSON.stringify({
      type: TEST_EVENT_TYPE,
      timestamp: new Date(now).toISOString(),
      data: { endpointId },
    });
    const headers = signWebhook(
      await this.outbox.secrets(endpointId, now),
      id,
      Math.floor(now / 1000),
      body,
    );
    const r = await this.#send(info.url, headers, body).catch((err: unknown): DeliveryResult => ({
      ok: false,
      status: null,
      code: 'CONNECT_FAILED',
      message: err instanceof Error ? err.message : 'failed',
    }));
    const at = this.#now();
    const error: WebhookError | null = r.ok ? null : { code: r.code, message: r.message, at };
    await this.outbox.recordTest(endpointId, error, at);
    return { ok: r.ok, status: r.status, error };
  }

  /**
   * Would a call to `url` be refused as things stand (the checks of `deliver` before it
   * connects: special addresses against the allowlist, https off loopback, DNS)? Null when it
   * would go out; never throws. `add` answers with it so a refused URL is seen at once.
   */
  async checkUrl(url: string): Promise<WebhookUrlWarning | null> {
    return checkTarget(url, this.#delivery);
  }

  /**
   * Sends the endpoint's pending deliveries now and its dead letters again (outbox `retry`).
   * @throws LatchkeyError NOT_FOUND.
   */
  async retry(endpointId: string): Promise<{ pending: number; dead: number }> {
    const r = await this.outbox.retry(endpointId, this.#now());
    this.wake();
    return r;
  }

  /** The endpoint's info, for answers after a change. */
  async endpoint(id: string): Promise<WebhookEndpointInfo | null> {
    return this.outbox.endpoint(id, this.#now());
  }

  /**
   * Stops the worker, writes the events emitted so far, waits for calls in flight, closes an
   * outbox it owns. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#running = false;
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.flush().catch(() => undefined);
    await this.#pumpDone;
    await this.idle();
    await Promise.all([...this.#releases]);
    this.#closed = true;
    if (this.#ownsOutbox) await this.outbox.close();
  }
}

function isPromise<T>(v: T | PromiseLike<T>): v is PromiseLike<T> {
  return typeof (v as PromiseLike<T> | null)?.then === 'function';
}
