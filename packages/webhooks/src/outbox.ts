/**
 * The durable webhook outbox on SQLite (better-sqlite3): endpoints with their secrets, events,
 * and one delivery row per (endpoint, event) with its attempt count and next attempt time.
 * Tables are prefixed `webhook_` and carry their own schema version row (`webhook_schema`), so
 * they can share a database file with other tables without touching its `user_version`.
 *
 * Ordering: an endpoint's deliveries go out by event sequence; only the lowest pending one (the
 * head) is ever due, so event N+1 waits until N was delivered or dead-lettered. Each delivery
 * carries its endpoint's sequence number (schema 3), taken from the endpoint's counter in the
 * transaction that queues the event: 1, 2, 3, ... per endpoint, never reused (the counter
 * survives pruning and restarts), and sent as `sequence` in the signed body, the same on every
 * retry and replay. Retries back off
 * exponentially with jitter until a day (maxAgeMs) after the event was queued; then the delivery
 * is dead-lettered, the queue moves on, and an admin can inspect and replay it.
 *
 * Secrets at rest (schema 2): each endpoint secret is sealed with AES-256-GCM under the outbox
 * key (`_secret-box.ts`); the database, its -wal and -shm and the key file are 0600, and deleted
 * rows are overwritten (`secure_delete`). A schema 1 file (plaintext secrets) is sealed on open,
 * its plaintext checkpointed out of the WAL and overwritten in the file.
 */
import {
  LatchkeyError,
  type DeadLetter,
  type WebhookEndpointInfo,
  type WebhookError,
  type WebhookEventType,
} from '@latchkey/protocol';
import { SchemaTooNewError, type Flow, type Sql } from '@latchkey/storage';
import {
  migrateSqlite,
  openSqlite,
  runSqlite,
  type SqliteDatabase,
} from '@latchkey/storage/sqlite';
import { checkOutboxKey, loadOrCreateOutboxKey, openSecret, sealSecret } from './_secret-box.ts';
import { EVENT_DATA, type EventData } from './events.ts';
import { generateSecret } from './signing.ts';

import {
  OUTBOX_STEPS,
  VERSION,
  sealLegacySecrets,
  signing,
  tighten,
  type EndpointRow,
  type SecretRow,
} from './outbox-schema.ts';
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
import { deleteEndpoint, insertEndpoint, queueEvents, setSecrets } from './outbox-queue.ts';
import {
  DEFAULT_RETRY,
  markDelivered,
  markFailed,
  recordTest,
  type RetryPolicy,
} from './outbox-attempts.ts';

export { DEFAULT_RETRY, type RetryPolicy } from './outbox-attempts.ts';
export type { DueDelivery, WebhookOutboxStore } from './outbox-api.ts';

export { OUTBOX_SCHEMA_VERSION } from './outbox-schema.ts';

export interface OutboxOptions {
  /** SQLite file (created if missing); may be shared with other tables. */
  path: string;
  retry?: Partial<RetryPolicy>;
  /** Uniform random in [0, 1) for jitter (default Math.random). */
  random?: () => number;
  /**
   * The 32-byte key that seals endpoint secrets at rest. Default: the key file `keyFile`.
   * @see docs/webhooks.md "Secrets at rest"
   */
  secretKey?: Uint8Array;
  /** Where the outbox key lives when `secretKey` is not given: default `<path>.key` (e.g. `webhooks.db.key`), created 0600. */
  keyFile?: string;
}

export class WebhookOutbox implements WebhookOutboxStore {
  readonly #db: SqliteDatabase;
  readonly #retry: RetryPolicy;
  readonly #random: () => number;
  readonly #key: Uint8Array;
  /** Sealing of schema 1's plaintext secrets; every secret read or write waits for it. */
  readonly #ready: Promise<void>;
  #closed = false;

  /**
   * @throws LatchkeyError UNAVAILABLE when the file or the key file cannot be opened, the key file
   *   is readable by others, or the file has a newer schema.
   * @throws RangeError when `secretKey` is not 32 bytes.
   */
  constructor(opts: OutboxOptions) {
    this.#retry = { ...DEFAULT_RETRY, ...opts.retry };
    this.#random = opts.random ?? Math.random;
    if (opts.secretKey !== undefined) checkOutboxKey(opts.secretKey);
    const onDisk = opts.path !== ':memory:' && !opts.path.startsWith('file:');
    try {
      this.#key = opts.secretKey ?? loadOrCreateOutboxKey(opts.keyFile ?? `${opts.path}.key`);
      // Created owner-only, and tightened when an older version left it 0644; deleted and
      // rewritten content is zeroed, not left in free space.
      this.#db = openSqlite(opts.path, { private: true, synchronous: 'FULL', secureDelete: true });
      if (onDisk) tighten(opts.path);
      migrateSqlite(this.#db, OUTBOX_STEPS, `webhook outbox ${opts.path}`, { versionRow: VERSION });
    } catch (err) {
      if (err instanceof SchemaTooNewError) throw err;
      throw new LatchkeyError('UNAVAILABLE', 'webhook outbox cannot be opened', {
        cause: err,
        detail: err instanceof Error ? err.message : String(err),
      });
    }
    this.#ready = sealLegacySecrets(this.#db, this.#key, () => this.#closed);
    // Reported by the first secret read or write; not an unhandled rejection meanwhile.
    this.#ready.catch(() => undefined);
  }

  /** Runs a flow in one transaction (IMMEDIATE when it writes). */
  #run<T>(flow: (sql: Sql) => Flow<T>, write = true): T {
    return runSqlite(this.#db, flow, write);
  }

  async #seal(endpointId: string, secret: string): Promise<string> {
    return sealSecret(this.#key, endpointId, secret);
  }

  async #open(endpointId: string, rows: SecretRow[]): Promise<string[]> {
    return Promise.all(rows.map((s) => openSecret(this.#key, endpointId, s.sealed)));
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
    await this.#ready;
    const id = randomId('ep_');
    const secret = generateSecret();
    const secrets: SecretRow[] = [{ sealed: await this.#seal(id, secret), expiresAt: null }];
    this.#run((sql) => insertEndpoint(sql, { ...e, id, secrets }, now));
    return { endpoint: this.endpoint(id, now) as WebhookEndpointInfo, secret };
  }

  /**
   * Starts signing with a new secret; the current ones keep signing for `overlapMs` (two
   * signatures meanwhile), so receivers can switch without losing a call.
   * @throws LatchkeyError NOT_FOUND.
   */
  async rotateSecret(
    id: string,
    now: number,
    overlapMs = 86_400_000,
  ): Promise<{ endpoint: WebhookEndpointInfo; secret: string }> {
    await this.#ready;
    this.#row(id);
    const secret = generateSecret();
    const sealed = await this.#seal(id, secret);
    // Read again after the await: another rotation may have happened meanwhile.
    const row = this.#row(id);
    const old = signing(JSON.parse(row.secrets) as SecretRow[], now)
      .map((s) => ({
        sealed: s.sealed,
        expiresAt: Math.min(s.expiresAt ?? Infinity, now + overlapMs),
      }))
      .filter((s) => s.expiresAt > now);
    const next: SecretRow[] = [...old, { sealed, expiresAt: null }];
    this.#run((sql) => setSecrets(sql, id, next));
    return { endpoint: this.endpoint(id, now) as WebhookEndpointInfo, secret };
  }

  /** Removes an endpoint and its queue. Returns false when unknown. */
  removeEndpoint(id: string): boolean {
    return this.#run((sql) => deleteEndpoint(sql, id));
  }

  endpoint(id: string, now: number): WebhookEndpointInfo | null {
    return this.#run((sql) => endpoint(sql, id, now), false);
  }

  listEndpoints(now: number): WebhookEndpointInfo[] {
    return this.#run((sql) => listEndpoints(sql, now), false);
  }

  /**
   * Secrets that sign now (the newest last), opened.
   * @throws LatchkeyError NOT_FOUND, or UNAVAILABLE when they do not open under the outbox key.
   */
  async secrets(id: string, now: number): Promise<string[]> {
    await this.#ready;
    return this.#open(id, signing(JSON.parse(this.#row(id).secrets) as SecretRow[], now));
  }

  #row(id: string): EndpointRow {
    return this.#run((sql) => endpointRow(sql, id), false);
  }

  // ---- events ------------------------------------------------------------------------------

  /**
   * Queues an event for every endpoint that subscribes to its type, in one transaction.
   * Returns the event id, or null when no endpoint wants it (nothing is stored then).
   * @throws ZodError when `data` does not match the event's schema (a bug of the caller).
   */
  emit<T extends WebhookEventType>(
    type: T,
    data: EventData<T>,
    now: number,
    id: string = randomId('evt_'),
  ): string | null {
    const parsed = EVENT_DATA[type].parse(data) as EventData<T>;
    const payload = JSON.stringify({ type, timestamp: new Date(now).toISOString(), data: parsed });
    return this.#run((sql) => queueEvents(sql, [{ id, type, payload, now }]))[0] ?? null;
  }

  // ---- deliveries --------------------------------------------------------------------------

  /**
   * The head delivery of every endpoint that is due at `now` (with its secrets opened), and when
   * the next one is due.
   * @throws LatchkeyError UNAVAILABLE when a secret does not open under the outbox key.
   */
  async due(
    now: number,
    busy: ReadonlySet<string> = new Set(),
  ): Promise<{ due: DueDelivery[]; nextAt: number | null }> {
    await this.#ready;
    const heads = this.#db
      .prepare(
        `SELECT d.endpoint_id, d.event_seq, d.endpoint_seq, d.attempts, d.next_at, e.id AS event_id, e.payload, p.url, p.secrets
           FROM (SELECT endpoint_id, MIN(event_seq) AS event_seq FROM webhook_deliveries WHERE state = 'pending' GROUP BY endpoint_id) h
           JOIN webhook_deliveries d ON d.endpoint_id = h.endpoint_id AND d.event_seq = h.event_seq
           JOIN webhook_events e ON e.seq = d.event_seq
           JOIN webhook_endpoints p ON p.id = d.endpoint_id`,
      )
      .all() as {
      endpoint_id: string;
      event_seq: number;
      endpoint_seq: number;
      attempts: number;
      next_at: number;
      event_id: string;
      payload: string;
      url: string;
      secrets: string;
    }[];
    const due: Promise<DueDelivery>[] = [];
    let nextAt: number | null = null;
    for (const h of heads) {
      if (busy.has(h.endpoint_id)) continue;
      if (h.next_at > now) {
        nextAt = nextAt === null ? h.next_at : Math.min(nextAt, h.next_at);
        continue;
      }
      due.push(
        this.#open(h.endpoint_id, signing(JSON.parse(h.secrets) as SecretRow[], now)).then(
          (secrets) => ({
            endpointId: h.endpoint_id,
            url: h.url,
            secrets,
            eventSeq: h.event_seq,
            eventId: h.event_id,
            sequence: h.endpoint_seq,
            payload: bodyWithSequence(h.payload, h.endpoint_seq),
            attempts: h.attempts,
          }),
        ),
      );
    }
    return { due: await Promise.all(due), nextAt };
  }

  /** Records a successful delivery. */
  delivered(endpointId: string, eventSeq: number, now: number): void {
    this.#run((sql) => markDelivered(sql, { endpointId, eventSeq, claim: null }, now));
  }

  /**
   * Records a failed attempt: schedules the next one (exponential backoff with jitter), or
   * dead-letters the delivery when that would be later than maxAgeMs after it was queued.
   * Returns whether it was dead-lettered.
   */
  failed(endpointId: string, eventSeq: number, error: WebhookError, now: number): boolean {
    const a = { endpointId, eventSeq, claim: null, error, now };
    return this.#run((sql) => markFailed(sql, a, this.#retry, this.#random));
  }

  /** Records the outcome of a test call in the endpoint's status. */
  recordTest(endpointId: string, error: WebhookError | null, now: number): void {
    this.#run((sql) => recordTest(sql, endpointId, error, now));
  }

  /** Dead letters of an endpoint, oldest event first. @throws LatchkeyError NOT_FOUND. */
  deadLetters(endpointId: string, limit = 500): DeadLetter[] {
    this.#row(endpointId);
    return this.#run((sql) => deadLetters(sql, endpointId, limit), false);
  }

  /**
   * Puts dead letters back in the queue (all of the endpoint's, or the named events), due now,
   * with a fresh retry window. They go out in event order before anything queued after them.
   * @throws LatchkeyError NOT_FOUND for an unknown endpoint.
   */
  replay(endpointId: string, now: number, eventIds?: readonly string[]): number {
    this.#row(endpointId);
    return this.#run((sql) => replayDead(sql, endpointId, now, eventIds));
  }

  /**
   * `retry`: every pending delivery of the endpoint is due now (the backoff skipped, attempts and
   * retry window kept) and every dead letter goes back in the queue as `replay` does. Order is
   * kept: they go out by sequence number. Returns how many of each.
   * @throws LatchkeyError NOT_FOUND for an unknown endpoint.
   */
  retry(endpointId: string, now: number): { pending: number; dead: number } {
    this.#row(endpointId);
    return this.#run((sql) => retryNow(sql, endpointId, now));
  }

  /** Deletes delivered rows and events older than `before` that no endpoint still needs. */
  prune(before: number): number {
    return this.#run((sql) => prune(sql, before));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }
}
