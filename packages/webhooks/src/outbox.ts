/**
 * The durable webhook outbox on SQLite (better-sqlite3): endpoints with their secrets, events,
 * and one delivery row per (endpoint, event) with its attempt count and next attempt time.
 * Tables are prefixed `webhook_` and carry their own schema version row (`webhook_schema`), so
 * they can share a database file with other tables without touching its `user_version`.
 *
 * Ordering: an endpoint's deliveries go out by event sequence; only the lowest pending one (the
 * head) is ever due, so event N+1 waits until N was delivered or dead-lettered. Retries back off
 * exponentially with jitter until a day (maxAgeMs) after the event was queued; then the delivery
 * is dead-lettered, the queue moves on, and an admin can inspect and replay it.
 */
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import {
  LatchkeyError,
  type DeadLetter,
  type WebhookEndpointInfo,
  type WebhookError,
  type WebhookEventType,
} from '@latchkey/protocol';
import { EVENT_DATA, type EventData } from './events.ts';
import { generateSecret } from './signing.ts';

export const OUTBOX_SCHEMA_VERSION = 1;

export interface RetryPolicy {
  /** First retry delay in ms (default 5 s); doubles per attempt. */
  baseMs: number;
  /** Longest delay between attempts (default 1 h). */
  maxDelayMs: number;
  /** Retries stop this long after the event was queued (default 24 h). */
  maxAgeMs: number;
}
export const DEFAULT_RETRY: RetryPolicy = { baseMs: 5_000, maxDelayMs: 3_600_000, maxAgeMs: 86_400_000 };

export interface OutboxOptions {
  /** SQLite file (created if missing); may be shared with other tables. */
  path: string;
  retry?: Partial<RetryPolicy>;
  /** Uniform random in [0, 1) for jitter (default Math.random). */
  random?: () => number;
}

/** A delivery that is due: what to send where. */
export interface DueDelivery {
  endpointId: string;
  url: string;
  secrets: string[];
  eventSeq: number;
  eventId: string;
  payload: string;
  attempts: number;
}

interface SecretRow {
  secret: string;
  /** Stops signing after this time (ms); null = current. */
  expiresAt: number | null;
}

interface EndpointRow {
  id: string;
  url: string;
  events: string | null;
  description: string | null;
  created_at: number;
  secrets: string;
  last_attempt_at: number | null;
  last_success_at: number | null;
  last_error: string | null;
}

function randomId(prefix: string): string {
  return prefix + randomBytes(16).toString('base64url');
}

export class WebhookOutbox {
  readonly #db: Database.Database;
  readonly #retry: RetryPolicy;
  readonly #random: () => number;
  #closed = false;

  /** @throws LatchkeyError UNAVAILABLE when the file cannot be opened or has a newer schema. */
  constructor(opts: OutboxOptions) {
    this.#retry = { ...DEFAULT_RETRY, ...opts.retry };
    this.#random = opts.random ?? Math.random;
    try {
      this.#db = new Database(opts.path);
      this.#db.pragma('journal_mode = WAL');
      this.#db.pragma('synchronous = FULL');
      this.#db.pragma('foreign_keys = ON');
      this.#db.pragma('busy_timeout = 5000');
      this.#migrate();
    } catch (err) {
      throw new LatchkeyError('UNAVAILABLE', 'webhook outbox cannot be opened', {
        cause: err,
        detail: err instanceof Error ? err.message : String(err),
      });
    }
  }

  #migrate(): void {
    const db = this.#db;
    db.exec('CREATE TABLE IF NOT EXISTS webhook_schema (name TEXT PRIMARY KEY, version INTEGER NOT NULL)');
    const row = db.prepare("SELECT version FROM webhook_schema WHERE name = 'outbox'").get() as { version: number } | undefined;
    const v = row?.version ?? 0;
    if (v > OUTBOX_SCHEMA_VERSION) throw new Error(`webhook outbox schema ${v} is newer than ${OUTBOX_SCHEMA_VERSION}`);
    if (v === OUTBOX_SCHEMA_VERSION) return;
    db.transaction(() => {
      db.exec(`
        CREATE TABLE webhook_endpoints (
          id TEXT PRIMARY KEY, url TEXT NOT NULL, events TEXT, description TEXT,
          created_at INTEGER NOT NULL, secrets TEXT NOT NULL,
          last_attempt_at INTEGER, last_success_at INTEGER, last_error TEXT
        );
        CREATE TABLE webhook_events (
          seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
          payload TEXT NOT NULL, created_at INTEGER NOT NULL
        );
        CREATE TABLE webhook_deliveries (
          endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
          event_seq INTEGER NOT NULL REFERENCES webhook_events(seq),
          state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
          attempts INTEGER NOT NULL DEFAULT 0, first_at INTEGER NOT NULL, next_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL, last_error TEXT,
          PRIMARY KEY (endpoint_id, event_seq)
        ) WITHOUT ROWID;
        CREATE INDEX webhook_deliveries_state ON webhook_deliveries (state, endpoint_id, event_seq);
      `);
      db.prepare("INSERT OR REPLACE INTO webhook_schema (name, version) VALUES ('outbox', ?)").run(OUTBOX_SCHEMA_VERSION);
    })();
  }

  // ---- endpoints ---------------------------------------------------------------------------

  /** Adds an endpoint; returns it with its secret (shown once). */
  addEndpoint(
    e: { url: string; events?: readonly WebhookEventType[] | undefined; description?: string | undefined },
    now: number,
  ): { endpoint: WebhookEndpointInfo; secret: string } {
    const id = randomId('ep_');
    const secret = generateSecret();
    this.#db
      .prepare('INSERT INTO webhook_endpoints (id, url, events, description, created_at, secrets) VALUES (?, ?, ?, ?, ?, ?)')
      .run(id, e.url, e.events ? JSON.stringify([...new Set(e.events)]) : null, e.description ?? null, now, JSON.stringify([{ secret, expiresAt: null }]));
    return { endpoint: this.endpoint(id, now) as WebhookEndpointInfo, secret };
  }

  /**
   * Starts signing with a new secret; the current ones keep signing for `overlapMs` (two
   * signatures meanwhile), so receivers can switch without losing a call.
   * @throws LatchkeyError NOT_FOUND.
   */
  rotateSecret(id: string, now: number, overlapMs = 86_400_000): { endpoint: WebhookEndpointInfo; secret: string } {
    const row = this.#row(id);
    const secret = generateSecret();
    const old = (JSON.parse(row.secrets) as SecretRow[])
      .filter((s) => s.expiresAt === null || s.expiresAt > now)
      .map((s) => ({ secret: s.secret, expiresAt: Math.min(s.expiresAt ?? Infinity, now + overlapMs) }))
      .filter((s) => s.expiresAt > now);
    this.#db.prepare('UPDATE webhook_endpoints SET secrets = ? WHERE id = ?').run(JSON.stringify([...old, { secret, expiresAt: null }]), id);
    return { endpoint: this.endpoint(id, now) as WebhookEndpointInfo, secret };
  }

  /** Removes an endpoint and its queue. Returns false when unknown. */
  removeEndpoint(id: string): boolean {
    return this.#db.prepare('DELETE FROM webhook_endpoints WHERE id = ?').run(id).changes > 0;
  }

  endpoint(id: string, now: number): WebhookEndpointInfo | null {
    const row = this.#db.prepare('SELECT * FROM webhook_endpoints WHERE id = ?').get(id) as EndpointRow | undefined;
    return row ? this.#info(row, now) : null;
  }

  listEndpoints(now: number): WebhookEndpointInfo[] {
    const rows = this.#db.prepare('SELECT * FROM webhook_endpoints ORDER BY created_at, id').all() as EndpointRow[];
    return rows.map((r) => this.#info(r, now));
  }

  /** Secrets that sign now (the newest last). */
  secrets(id: string, now: number): string[] {
    return this.#secrets(this.#row(id), now);
  }

  #secrets(row: EndpointRow, now: number): string[] {
    return (JSON.parse(row.secrets) as SecretRow[]).filter((s) => s.expiresAt === null || s.expiresAt > now).map((s) => s.secret);
  }

  #row(id: string): EndpointRow {
    const row = this.#db.prepare('SELECT * FROM webhook_endpoints WHERE id = ?').get(id) as EndpointRow | undefined;
    if (!row) throw new LatchkeyError('NOT_FOUND', 'no such webhook endpoint');
    return row;
  }

  #info(r: EndpointRow, now: number): WebhookEndpointInfo {
    const counts = this.#db
      .prepare('SELECT state, COUNT(*) AS n FROM webhook_deliveries WHERE endpoint_id = ? GROUP BY state')
      .all(r.id) as { state: string; n: number }[];
    const n = (s: string): number => counts.find((c) => c.state === s)?.n ?? 0;
    return {
      id: r.id,
      url: r.url,
      events: r.events === null ? null : (JSON.parse(r.events) as WebhookEventType[]),
      description: r.description,
      createdAt: r.created_at,
      secrets: Math.max(1, this.#secrets(r, now).length),
      status: {
        pending: n('pending'),
        dead: n('dead'),
        delivered: n('delivered'),
        lastAttemptAt: r.last_attempt_at,
        lastSuccessAt: r.last_success_at,
        lastError: r.last_error === null ? null : (JSON.parse(r.last_error) as WebhookError),
      },
    };
  }

  // ---- events ------------------------------------------------------------------------------

  /**
   * Queues an event for every endpoint that subscribes to its type, in one transaction.
   * Returns the event id, or null when no endpoint wants it (nothing is stored then).
   * @throws ZodError when `data` does not match the event's schema (a bug of the caller).
   */
  emit<T extends WebhookEventType>(type: T, data: EventData<T>, now: number): string | null {
    const parsed = EVENT_DATA[type].parse(data) as EventData<T>;
    const endpoints = (this.#db.prepare('SELECT id, events FROM webhook_endpoints').all() as { id: string; events: string | null }[]).filter(
      (e) => e.events === null || (JSON.parse(e.events) as string[]).includes(type),
    );
    if (endpoints.length === 0) return null;
    const id = randomId('evt_');
    const payload = JSON.stringify({ type, timestamp: new Date(now).toISOString(), data: parsed });
    this.#db.transaction(() => {
      const seq = this.#db
        .prepare('INSERT INTO webhook_events (id, type, payload, created_at) VALUES (?, ?, ?, ?)')
        .run(id, type, payload, now).lastInsertRowid;
      const ins = this.#db.prepare(
        "INSERT INTO webhook_deliveries (endpoint_id, event_seq, state, attempts, first_at, next_at, updated_at) VALUES (?, ?, 'pending', 0, ?, ?, ?)",
      );
      for (const e of endpoints) ins.run(e.id, seq, now, now, now);
    })();
    return id;
  }

  // ---- deliveries --------------------------------------------------------------------------

  /** The head delivery of every endpoint that is due at `now`, and when the next one is due. */
  due(now: number, busy: ReadonlySet<string> = new Set()): { due: DueDelivery[]; nextAt: number | null } {
    const heads = this.#db
      .prepare(
        `SELECT d.endpoint_id, d.event_seq, d.attempts, d.next_at, e.id AS event_id, e.payload, p.url, p.secrets
           FROM (SELECT endpoint_id, MIN(event_seq) AS event_seq FROM webhook_deliveries WHERE state = 'pending' GROUP BY endpoint_id) h
           JOIN webhook_deliveries d ON d.endpoint_id = h.endpoint_id AND d.event_seq = h.event_seq
           JOIN webhook_events e ON e.seq = d.event_seq
           JOIN webhook_endpoints p ON p.id = d.endpoint_id`,
      )
      .all() as {
      endpoint_id: string;
      event_seq: number;
      attempts: number;
      next_at: number;
      event_id: string;
      payload: string;
      url: string;
      secrets: string;
    }[];
    const due: DueDelivery[] = [];
    let nextAt: number | null = null;
    for (const h of heads) {
      if (busy.has(h.endpoint_id)) continue;
      if (h.next_at > now) {
        nextAt = nextAt === null ? h.next_at : Math.min(nextAt, h.next_at);
        continue;
      }
      due.push({
        endpointId: h.endpoint_id,
        url: h.url,
        secrets: (JSON.parse(h.secrets) as SecretRow[]).filter((s) => s.expiresAt === null || s.expiresAt > now).map((s) => s.secret),
        eventSeq: h.event_seq,
        eventId: h.event_id,
        payload: h.payload,
        attempts: h.attempts,
      });
    }
    return { due, nextAt };
  }

  /** Records a successful delivery. */
  delivered(endpointId: string, eventSeq: number, now: number): void {
    this.#db.transaction(() => {
      this.#db
        .prepare("UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1, updated_at = ?, last_error = NULL WHERE endpoint_id = ? AND event_seq = ? AND state = 'pending'")
        .run(now, endpointId, eventSeq);
      this.#db.prepare('UPDATE webhook_endpoints SET last_attempt_at = ?, last_success_at = ?, last_error = NULL WHERE id = ?').run(now, now, endpointId);
    })();
  }

  /**
   * Records a failed attempt: schedules the next one (exponential backoff with jitter), or
   * dead-letters the delivery when that would be later than maxAgeMs after it was queued.
   * Returns whether it was dead-lettered.
   */
  failed(endpointId: string, eventSeq: number, error: WebhookError, now: number): boolean {
    return this.#db.transaction(() => {
      const d = this.#db
        .prepare("SELECT attempts, first_at FROM webhook_deliveries WHERE endpoint_id = ? AND event_seq = ? AND state = 'pending'")
        .get(endpointId, eventSeq) as { attempts: number; first_at: number } | undefined;
      const err = JSON.stringify(error);
      this.#db.prepare('UPDATE webhook_endpoints SET last_attempt_at = ?, last_error = ? WHERE id = ?').run(now, err, endpointId);
      if (!d) return false;
      const attempts = d.attempts + 1;
      const { baseMs, maxDelayMs, maxAgeMs } = this.#retry;
      const backoff = Math.min(maxDelayMs, baseMs * 2 ** Math.min(attempts - 1, 40));
      // "Equal jitter": half fixed, half random, so retries of many endpoints spread out.
      const delay = Math.round(backoff / 2 + (backoff / 2) * this.#random());
      const next = now + delay;
      const dead = next > d.first_at + maxAgeMs;
      this.#db
        .prepare('UPDATE webhook_deliveries SET state = ?, attempts = ?, next_at = ?, updated_at = ?, last_error = ? WHERE endpoint_id = ? AND event_seq = ?')
        .run(dead ? 'dead' : 'pending', attempts, dead ? now : next, now, err, endpointId, eventSeq);
      return dead;
    })();
  }

  /** Records the outcome of a test call in the endpoint's status. */
  recordTest(endpointId: string, error: WebhookError | null, now: number): void {
    if (error) this.#db.prepare('UPDATE webhook_endpoints SET last_attempt_at = ?, last_error = ? WHERE id = ?').run(now, JSON.stringify(error), endpointId);
    else this.#db.prepare('UPDATE webhook_endpoints SET last_attempt_at = ?, last_success_at = ?, last_error = NULL WHERE id = ?').run(now, now, endpointId);
  }

  /** Dead letters of an endpoint, oldest event first. @throws LatchkeyError NOT_FOUND. */
  deadLetters(endpointId: string, limit = 500): DeadLetter[] {
    this.#row(endpointId);
    const rows = this.#db
      .prepare(
        `SELECT e.id, e.type, e.created_at, d.attempts, d.updated_at, d.last_error FROM webhook_deliveries d
           JOIN webhook_events e ON e.seq = d.event_seq
          WHERE d.endpoint_id = ? AND d.state = 'dead' ORDER BY d.event_seq LIMIT ?`,
      )
      .all(endpointId, limit) as { id: string; type: string; created_at: number; attempts: number; updated_at: number; last_error: string | null }[];
    return rows.map((r) => ({
      eventId: r.id,
      type: r.type,
      createdAt: r.created_at,
      attempts: r.attempts,
      deadAt: r.updated_at,
      lastError: r.last_error === null ? null : (JSON.parse(r.last_error) as WebhookError),
    }));
  }

  /**
   * Puts dead letters back in the queue (all of the endpoint's, or the named events), due now,
   * with a fresh retry window. They go out in event order before anything queued after them.
   * @throws LatchkeyError NOT_FOUND for an unknown endpoint.
   */
  replay(endpointId: string, now: number, eventIds?: readonly string[]): number {
    this.#row(endpointId);
    return this.#db.transaction(() => {
      const sql = `UPDATE webhook_deliveries SET state = 'pending', attempts = 0, first_at = ?, next_at = ?, updated_at = ?
                    WHERE endpoint_id = ? AND state = 'dead'`;
      if (eventIds === undefined) return this.#db.prepare(sql).run(now, now, now, endpointId).changes;
      const stmt = this.#db.prepare(`${sql} AND event_seq = (SELECT seq FROM webhook_events WHERE id = ?)`);
      let n = 0;
      for (const id of eventIds) n += stmt.run(now, now, now, endpointId, id).changes;
      return n;
    })();
  }

  /** Deletes delivered rows and events older than `before` that no endpoint still needs. */
  prune(before: number): number {
    return this.#db.transaction(() => {
      this.#db.prepare("DELETE FROM webhook_deliveries WHERE state = 'delivered' AND updated_at < ?").run(before);
      return this.#db
        .prepare('DELETE FROM webhook_events WHERE created_at < ? AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_seq = webhook_events.seq)')
        .run(before).changes;
    })();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }
}
