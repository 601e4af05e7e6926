/**
 * The webhook outbox on PostgreSQL, shared by every process (relays, or key services) that
 * points at one database: each event is delivered once, by whichever process is alive. Same
 * semantics as the SQLite outbox (outbox.ts), from the same flows (outbox-queue.ts,
 * outbox-attempts.ts, outbox-admin.ts): per-endpoint order (only the head is due), per-endpoint
 * sequence numbers never reused, retries with backoff, dead letters, the admin operations,
 * endpoint secrets sealed at rest under the outbox key.
 *
 * Across processes (outbox-pg-claim.ts): a process claims a due head under a lease before it
 * calls, and only that claim's outcome is recorded. Two live processes never send the same
 * delivery; a delivered row is never sent again. A process that dies between the call and
 * recording its outcome leaves the claim to run out (`leaseMs`), then another process sends the
 * delivery again: at-least-once in that one case, with the same event id (`webhook-id`), body
 * and sequence, so a receiver that keeps the ids it has seen drops it (docs/webhooks.md).
 *
 * The outbox key must be the same for every process: given as bytes or a key file (read, or
 * created when missing); the database keeps a check value, and a process with another key is
 * refused at open (WebhookOutboxKeyError). `pg` is loaded only when this outbox opens.
 *
 * Longer than 400 lines: the PostgreSQL side of every outbox operation (one method each, over the
 * shared flows); the claim protocol is in outbox-pg-claim.ts.
 */
import {
  LatchkeyError,
  type DeadLetter,
  type WebhookEndpointInfo,
  type WebhookError,
  type WebhookEventType,
} from '@latchkey/protocol';
import { SchemaTooNewError, type Flow, type Sql } from '@latchkey/storage';
import type * as StoragePg from '@latchkey/storage/postgres';
import type { PgPool } from '@latchkey/storage/postgres';
import { BatchWriter } from './_batch-writer.ts';
import { checkOutboxKey, loadOrCreateOutboxKey, openSecret, sealSecret } from './_secret-box.ts';
import { EVENT_DATA, type EventData } from './events.ts';
import {
  deadLetters,
  endpoint,
  endpointRow,
  listEndpoints,
  prune,
  replayDead,
  retryNow,
} from './outbox-admin.ts';
import {
  bodyWithSequence,
  randomId,
  type DueDelivery,
  type WebhookOutboxStore,
} from './outbox-api.ts';
import {
  DEFAULT_RETRY,
  markDelivered,
  markFailed,
  recordTest,
  type RetryPolicy,
} from './outbox-attempts.ts';
import { WebhookOutboxKeyError } from './outbox-key-error.ts';
import { claimDue, releaseClaim, type ClaimedRow } from './outbox-pg-claim.ts';
import {
  PG_OUTBOX_LOCK,
  PG_OUTBOX_STEPS,
  PG_OUTBOX_VERSION_TABLE,
  checkSharedKey,
  keyCheckValue,
} from './outbox-pg-schema.ts';
import {
  deleteEndpoint,
  insertEndpoint,
  queueEvents,
  rotateSecrets,
  type QueuedEvent,
} from './outbox-queue.ts';
import { signing, type SecretRow } from './outbox-schema.ts';
import { generateSecret } from './signing.ts';

export interface PgOutboxOptions {
  /** `postgres://...`: the database every process of the cluster shares. Never logged. */
  url: string;
  /** The shared 32-byte outbox key. Give this or `keyFile`. */
  secretKey?: Uint8Array;
  /**
   * A file holding the shared key (32 raw bytes, 0600), the same bytes on every process;
   * created with fresh bytes when missing (for the first process; copy it to the others).
   */
  keyFile?: string;
  /**
   * How long a claim lasts (ms, default 60 s): must be longer than a call takes (the service
   * refuses a lease under twice its delivery timeout). A process that dies mid-call delays
   * that endpoint's queue by this much.
   */
  leaseMs?: number;
  /** How often the service looks for events queued by other processes (ms, default 2 s). */
  pollMs?: number;
  retry?: Partial<RetryPolicy>;
  /** Uniform random in [0, 1) for jitter (default Math.random). */
  random?: () => number;
  /** Connections of this process's pool (default 4). */
  maxConnections?: number;
}

type PgModule = typeof StoragePg;

/** Events queued in one transaction at most. */
const EMIT_BATCH = 200;
/** Events waiting to be written at most (then emit fails: logged, as any failed write). */
const EMIT_QUEUE = 50_000;

export class PgWebhookOutbox implements WebhookOutboxStore {
  readonly leaseMs: number;
  readonly pollMs: number;
  /** This process's claim id: claims it made are recognised by it. */
  readonly claimId = randomId('wk_');
  readonly #retry: RetryPolicy;
  readonly #random: () => number;
  readonly #key: Uint8Array;
  readonly #ready: Promise<{ pg: PgModule; pool: PgPool }>;
  #pool: PgPool | undefined;
  readonly #events = new BatchWriter<QueuedEvent, string | null>(
    (evs) => this.#run((sql) => queueEvents(sql, evs)),
    EMIT_BATCH,
    EMIT_QUEUE,
  );
  #closed = false;

  /**
   * Starts opening (see `ready`, or use `PgWebhookOutbox.open`).
   * @throws WebhookOutboxKeyError MISSING when neither `secretKey` nor `keyFile` is given.
   * @throws LatchkeyError UNAVAILABLE when the key file cannot be read or created, or is
   *   readable by others.
   * @throws RangeError when `secretKey` is not 32 bytes, or leaseMs/pollMs is not positive.
   */
  constructor(opts: PgOutboxOptions) {
    this.leaseMs = opts.leaseMs ?? 60_000;
    this.pollMs = opts.pollMs ?? 2_000;
    if (!(this.leaseMs > 0) || !(this.pollMs > 0)) throw new RangeError('leaseMs and pollMs');
    this.#retry = { ...DEFAULT_RETRY, ...opts.retry };
    this.#random = opts.random ?? Math.random;
    if (opts.secretKey !== undefined) this.#key = checkOutboxKey(opts.secretKey);
    else if (opts.keyFile !== undefined) {
      try {
        this.#key = loadOrCreateOutboxKey(opts.keyFile);
      } catch (err) {
        if (err instanceof LatchkeyError) throw err;
        throw new LatchkeyError('UNAVAILABLE', 'webhook outbox key file cannot be read', {
          cause: err,
          detail: err instanceof Error ? err.message : String(err),
        });
      }
    } else
      throw new WebhookOutboxKeyError(
        'MISSING',
        'a PostgreSQL webhook outbox needs the outbox key shared by every process: give secretKey or keyFile',
      );
    this.#ready = this.#open(opts);
    // Reported by `ready` and by every call; not an unhandled rejection meanwhile.
    this.#ready.catch(() => undefined);
  }

  /**
   * Opens an outbox and waits until it is ready.
   * @throws as the constructor, and as `ready`.
   */
  static async open(opts: PgOutboxOptions): Promise<PgWebhookOutbox> {
    const o = new PgWebhookOutbox(opts);
    try {
      await o.ready();
    } catch (err) {
      await o.close();
      throw err;
    }
    return o;
  }

  async #open(opts: PgOutboxOptions): Promise<{ pg: PgModule; pool: PgPool }> {
    const pg = await import('@latchkey/storage/postgres');
    const pool = pg.openPool({ url: opts.url, max: opts.maxConnections ?? 4 });
    this.#pool = pool;
    try {
      await pg.migratePostgres(pool, {
        lock: PG_OUTBOX_LOCK,
        versionTable: PG_OUTBOX_VERSION_TABLE,
        steps: PG_OUTBOX_STEPS,
        what: 'the PostgreSQL webhook outbox',
      });
      const sealed = await keyCheckValue(this.#key);
      await pg.runPostgres(pool, (sql) => checkSharedKey(sql, this.#key, sealed));
    } catch (err) {
      if (err instanceof SchemaTooNewError || err instanceof WebhookOutboxKeyError) throw err;
      throw new LatchkeyError('UNAVAILABLE', 'webhook outbox cannot be opened', {
        cause: err,
        detail: err instanceof Error ? err.message : String(err),
      });
    }
    return { pg, pool };
  }

  /**
   * Resolves once the schema is migrated and the key checked.
   * @throws WebhookOutboxKeyError MISMATCH when the key is not the database's.
   * @throws SchemaTooNewError when the database has a newer outbox schema.
   * @throws LatchkeyError UNAVAILABLE when the database cannot be reached.
   */
  async ready(): Promise<void> {
    await this.#ready;
  }

  async #run<T>(flow: (sql: Sql) => Flow<T>): Promise<T> {
    if (this.#closed) throw new LatchkeyError('UNAVAILABLE', 'webhook outbox is closed');
    const { pg, pool } = await this.#ready;
    return pg.runPostgres(pool, flow);
  }

  // ---- endpoints ---------------------------------------------------------------------------

  /** Adds an endpoint; returns it with its secret (shown once; stored sealed). */
  async addEndpoint(
    e: {
      url: string;
      events?: readonly WebhookEventType[] | undefined;
      description?: string | undefined;
    },
    now: number,
  ): Promise<{ endpoint: WebhookEndpointInfo; secret: string }> {
    const id = randomId('ep_');
    const secret = generateSecret();
    const secrets: SecretRow[] = [
      { sealed: await sealSecret(this.#key, id, secret), expiresAt: null },
    ];
    const info = await this.#run(function* (sql) {
      yield* insertEndpoint(sql, { ...e, id, secrets }, now);
      return yield* endpoint(sql, id, now);
    });
    return { endpoint: info as WebhookEndpointInfo, secret };
  }

  /**
   * Starts signing with a new secret; the current ones keep signing for `overlapMs`.
   * @throws LatchkeyError NOT_FOUND.
   */
  async rotateSecret(
    id: string,
    now: number,
    overlapMs = 86_400_000,
  ): Promise<{ endpoint: WebhookEndpointInfo; secret: string }> {
    await this.#run((sql) => endpointRow(sql, id));
    const secret = generateSecret();
    const sealed = await sealSecret(this.#key, id, secret);
    // Read, changed and written under the row's lock: rotations by two processes both count.
    const info = await this.#run(function* (sql) {
      yield* rotateSecrets(sql, id, sealed, now, overlapMs);
      return yield* endpoint(sql, id, now);
    });
    return { endpoint: info as WebhookEndpointInfo, secret };
  }

  removeEndpoint(id: string): Promise<boolean> {
    return this.#run((sql) => deleteEndpoint(sql, id));
  }

  endpoint(id: string, now: number): Promise<WebhookEndpointInfo | null> {
    return this.#run((sql) => endpoint(sql, id, now));
  }

  listEndpoints(now: number): Promise<WebhookEndpointInfo[]> {
    return this.#run((sql) => listEndpoints(sql, now));
  }

  /**
   * Secrets that sign now (the newest last), opened.
   * @throws LatchkeyError NOT_FOUND, or UNAVAILABLE when they do not open under the outbox key.
   */
  async secrets(id: string, now: number): Promise<string[]> {
    const r = await this.#run((sql) => endpointRow(sql, id));
    return this.#openAll(id, signing(JSON.parse(r.secrets) as SecretRow[], now));
  }

  #openAll(id: string, rows: SecretRow[]): Promise<string[]> {
    return Promise.all(rows.map((s) => openSecret(this.#key, id, s.sealed)));
  }

  // ---- events ------------------------------------------------------------------------------

  /**
   * Queues an event for every subscribed endpoint. Events of this process are written in the
   * order of the calls (batched, one transaction per batch). Resolves with the id, or null when
   * no endpoint wants it.
   * @throws ZodError (synchronously) when `data` does not match the event's schema.
   */
  emit<T extends WebhookEventType>(
    type: T,
    data: EventData<T>,
    now: number,
    id: string = randomId('evt_'),
  ): Promise<string | null> {
    const parsed = EVENT_DATA[type].parse(data) as EventData<T>;
    const payload = JSON.stringify({ type, timestamp: new Date(now).toISOString(), data: parsed });
    if (this.#closed)
      return Promise.reject(new LatchkeyError('UNAVAILABLE', 'webhook outbox is closed'));
    return this.#events.push({ id, type, payload, now });
  }

  /** Resolves once every event queued so far is written (or failed). */
  flush(): Promise<void> {
    return this.#events.flush();
  }

  // ---- deliveries --------------------------------------------------------------------------

  /**
   * Claims up to `limit` head deliveries due at `now` for this process (see outbox-pg-claim.ts),
   * with their secrets opened, and says when to look again.
   * @throws LatchkeyError UNAVAILABLE when the database fails or a secret does not open (the
   *   claims are given up first).
   */
  async due(
    now: number,
    busy: ReadonlySet<string> = new Set(),
    limit = 8,
  ): Promise<{ due: DueDelivery[]; nextAt: number | null }> {
    const leaseUntil = now + this.leaseMs;
    const { claimed, nextAt } = await this.#run((sql) =>
      claimDue(sql, { now, busy: [...busy], limit, claim: this.claimId, leaseUntil }),
    );
    const opened = await Promise.allSettled(claimed.map((c) => this.#due(c, now, leaseUntil)));
    const failed = opened.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failed) {
      await Promise.allSettled(claimed.map((c) => this.release(c.endpoint_id, c.event_seq)));
      throw failed.reason;
    }
    return {
      due: opened.map((o) => (o as PromiseFulfilledResult<DueDelivery>).value),
      nextAt,
    };
  }

  async #due(c: ClaimedRow, now: number, leaseUntil: number): Promise<DueDelivery> {
    const secrets = await this.#openAll(
      c.endpoint_id,
      signing(JSON.parse(c.secrets) as SecretRow[], now),
    );
    return {
      endpointId: c.endpoint_id,
      url: c.url,
      secrets,
      eventSeq: c.event_seq,
      eventId: c.event_id,
      sequence: c.endpoint_seq,
      payload: bodyWithSequence(c.payload, c.endpoint_seq),
      attempts: c.attempts,
      leaseUntil,
    };
  }

  /** Gives up this process's claim on a delivery it will not attempt now. */
  async release(endpointId: string, eventSeq: number): Promise<void> {
    await this.#run((sql) => releaseClaim(sql, endpointId, eventSeq, this.claimId));
  }

  /** Records a successful delivery (under this process's claim; a lost claim records nothing). */
  delivered(endpointId: string, eventSeq: number, now: number): Promise<boolean> {
    return this.#run((sql) =>
      markDelivered(sql, { endpointId, eventSeq, claim: this.claimId }, now),
    );
  }

  /** Records a failed attempt (see the SQLite outbox); returns whether it was dead-lettered. */
  failed(endpointId: string, eventSeq: number, error: WebhookError, now: number): Promise<boolean> {
    const a = { endpointId, eventSeq, claim: this.claimId, error, now };
    return this.#run((sql) => markFailed(sql, a, this.#retry, this.#random));
  }

  recordTest(endpointId: string, error: WebhookError | null, now: number): Promise<void> {
    return this.#run((sql) => recordTest(sql, endpointId, error, now));
  }

  /** Dead letters of an endpoint, oldest event first. @throws LatchkeyError NOT_FOUND. */
  deadLetters(endpointId: string, limit = 500): Promise<DeadLetter[]> {
    return this.#run(function* (sql) {
      yield* endpointRow(sql, endpointId);
      return yield* deadLetters(sql, endpointId, limit);
    });
  }

  /** Puts dead letters back in the queue, due now. @throws LatchkeyError NOT_FOUND. */
  replay(endpointId: string, now: number, eventIds?: readonly string[]): Promise<number> {
    return this.#run(function* (sql) {
      yield* endpointRow(sql, endpointId);
      return yield* replayDead(sql, endpointId, now, eventIds);
    });
  }

  /** Pending deliveries due now, dead letters replayed. @throws LatchkeyError NOT_FOUND. */
  retry(endpointId: string, now: number): Promise<{ pending: number; dead: number }> {
    return this.#run(function* (sql) {
      yield* endpointRow(sql, endpointId);
      return yield* retryNow(sql, endpointId, now);
    });
  }

  /** Deletes delivered rows and events older than `before` that no endpoint still needs. */
  prune(before: number): Promise<number> {
    return this.#run((sql) => prune(sql, before));
  }

  /** Writes the events queued so far, then ends the pool. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.flush();
    this.#closed = true;
    await this.#ready.catch(() => undefined);
    await this.#pool?.end().catch(() => undefined);
  }
}
