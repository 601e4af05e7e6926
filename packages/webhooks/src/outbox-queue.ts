/**
 * Writing to the webhook outbox, as flows (@latchkey/storage `Flow`) that the SQLite outbox
 * (outbox.ts) and the PostgreSQL one (outbox-pg.ts) run in one transaction each: endpoints and
 * their sealed secrets, and events queued with one delivery per subscribed endpoint, each
 * numbered from the endpoint's counter in the same transaction (numbers never reused, no hole).
 */
import { LatchkeyError, type WebhookEventType } from '@latchkey/protocol';
import { exec, forUpdate, row, rows, type Flow, type Sql } from '@latchkey/storage';
import { signing, type SecretRow } from './outbox-schema.ts';

export function* insertEndpoint(
  sql: Sql,
  e: {
    id: string;
    url: string;
    events?: readonly WebhookEventType[] | undefined;
    description?: string | undefined;
    secrets: SecretRow[];
  },
  now: number,
): Flow<void> {
  yield* exec(
    sql,
    'INSERT INTO webhook_endpoints (id, url, events, description, created_at, secrets) VALUES (?, ?, ?, ?, ?, ?)',
    [
      e.id,
      e.url,
      e.events ? JSON.stringify([...new Set(e.events)]) : null,
      e.description ?? null,
      now,
      JSON.stringify(e.secrets),
    ],
  );
}

export function* setSecrets(sql: Sql, id: string, secrets: SecretRow[]): Flow<number> {
  return yield* exec(sql, 'UPDATE webhook_endpoints SET secrets = ? WHERE id = ?', [
    JSON.stringify(secrets),
    id,
  ]);
}

/** Removes an endpoint and (cascade) its deliveries; false when unknown. */
export function* deleteEndpoint(sql: Sql, id: string): Flow<boolean> {
  return (yield* exec(sql, 'DELETE FROM webhook_endpoints WHERE id = ?', [id])) > 0;
}

/** One event to queue: its id, type and stored JSON payload. */
export interface QueuedEvent {
  id: string;
  type: WebhookEventType;
  payload: string;
  now: number;
}

/**
 * Queues events, in order, for every endpoint that subscribes to each one's type. Returns each
 * event's id, or null when no endpoint wants it (nothing is stored for it then).
 */
export function* queueEvents(sql: Sql, evs: readonly QueuedEvent[]): Flow<(string | null)[]> {
  const all = yield* rows<{ id: string; events: string | null }>(
    sql,
    'SELECT id, events FROM webhook_endpoints ORDER BY id',
    [],
  );
  const wants = (e: { events: string | null }, type: string): boolean =>
    e.events === null || (JSON.parse(e.events) as string[]).includes(type);
  const involved = all.filter((e) => evs.some((ev) => wants(e, ev.type)));
  if (involved.length > 0 && sql.dialect === 'postgres') {
    // Lock the endpoints (in id order: no deadlock between processes) before any event takes
    // its number, so that for each endpoint, event order, endpoint_seq order and commit order
    // agree across every process queueing at once. Held until commit.
    yield* rows(
      sql,
      `SELECT id FROM webhook_endpoints WHERE id IN (${involved.map(() => '?').join(', ')}) ORDER BY id FOR NO KEY UPDATE`,
      involved.map((e) => e.id),
    );
  }
  const out: (string | null)[] = [];
  for (const ev of evs) {
    const endpoints = involved.filter((e) => wants(e, ev.type));
    if (endpoints.length === 0) {
      out.push(null);
      continue;
    }
    const inserted = yield* row<{ seq: number }>(
      sql,
      'INSERT INTO webhook_events (id, type, payload, created_at) VALUES (?, ?, ?, ?) RETURNING seq',
      [ev.id, ev.type, ev.payload, ev.now],
    );
    const seq = Number(inserted?.seq);
    for (const e of endpoints) {
      // The endpoint's next number, taken in the same transaction as the delivery row: a crash
      // loses both or neither, so numbers have no hole.
      const taken = yield* row<{ n: number }>(
        sql,
        'UPDATE webhook_endpoints SET next_seq = next_seq + 1 WHERE id = ? RETURNING next_seq - 1 AS n',
        [e.id],
      );
      if (taken === undefined) continue; // removed meanwhile (PostgreSQL)
      yield* exec(
        sql,
        "INSERT INTO webhook_deliveries (endpoint_id, event_seq, state, attempts, first_at, next_at, updated_at, endpoint_seq) VALUES (?, ?, 'pending', 0, ?, ?, ?, ?)",
        [e.id, seq, ev.now, ev.now, ev.now, Number(taken.n)],
      );
    }
    out.push(ev.id);
  }
  return out;
}

/**
 * Adds a sealed secret to an endpoint: the current ones keep signing until `now + overlapMs`
 * (or their own earlier end). The row is read under its lock on PostgreSQL (SQLite holds the
 * file's write lock), so two rotations at once both count.
 * @throws LatchkeyError NOT_FOUND.
 */
export function* rotateSecrets(
  sql: Sql,
  id: string,
  sealed: string,
  now: number,
  overlapMs: number,
): Flow<void> {
  const r = yield* row<{ secrets: string }>(
    sql,
    `SELECT secrets FROM webhook_endpoints WHERE id = ?${forUpdate(sql, true)}`,
    [id],
  );
  if (!r) throw new LatchkeyError('NOT_FOUND', 'no such webhook endpoint');
  const old = signing(JSON.parse(r.secrets) as SecretRow[], now)
    .map((s) => ({
      sealed: s.sealed,
      expiresAt: Math.min(s.expiresAt ?? Infinity, now + overlapMs),
    }))
    .filter((s) => s.expiresAt > now);
  yield* setSecrets(sql, id, [...old, { sealed, expiresAt: null }]);
}
