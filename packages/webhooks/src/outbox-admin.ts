/**
 * The webhook outbox's administration (docs/webhooks.md "Admin API and command line"): reading
 * an endpoint with its counts, listing dead letters, replaying them, retrying an endpoint now,
 * pruning what no endpoint needs. Each is a flow (@latchkey/storage `Flow`) that the SQLite
 * outbox (outbox.ts) and the PostgreSQL one (outbox-pg.ts) run in one transaction; the outbox
 * checks the endpoint first.
 */
import {
  LatchkeyError,
  type DeadLetter,
  type WebhookEndpointInfo,
  type WebhookError,
  type WebhookEventType,
} from '@latchkey/protocol';
import { exec, row, rows, type Flow, type Sql } from '@latchkey/storage';
import type { EndpointRow } from './outbox-schema.ts';

export function* deadLetters(sql: Sql, endpointId: string, limit: number): Flow<DeadLetter[]> {
  const found = yield* rows<{
    id: string;
    type: string;
    created_at: number;
    endpoint_seq: number;
    attempts: number;
    updated_at: number;
    last_error: string | null;
  }>(
    sql,
    `SELECT e.id, e.type, e.created_at, d.endpoint_seq, d.attempts, d.updated_at, d.last_error FROM webhook_deliveries d
       JOIN webhook_events e ON e.seq = d.event_seq
      WHERE d.endpoint_id = ? AND d.state = 'dead' ORDER BY d.event_seq LIMIT ?`,
    [endpointId, limit],
  );
  return found.map((r) => ({
    eventId: r.id,
    sequence: r.endpoint_seq,
    type: r.type,
    createdAt: r.created_at,
    attempts: r.attempts,
    deadAt: r.updated_at,
    lastError: r.last_error === null ? null : (JSON.parse(r.last_error) as WebhookError),
  }));
}

export function* replayDead(
  sql: Sql,
  endpointId: string,
  now: number,
  eventIds?: readonly string[],
): Flow<number> {
  const text = `UPDATE webhook_deliveries SET state = 'pending', attempts = 0, first_at = ?, next_at = ?, updated_at = ?
                 WHERE endpoint_id = ? AND state = 'dead'`;
  if (eventIds === undefined) return yield* exec(sql, text, [now, now, now, endpointId]);
  let n = 0;
  for (const id of eventIds)
    n += yield* exec(sql, `${text} AND event_seq = (SELECT seq FROM webhook_events WHERE id = ?)`, [
      now,
      now,
      now,
      endpointId,
      id,
    ]);
  return n;
}

export function* retryNow(
  sql: Sql,
  endpointId: string,
  now: number,
): Flow<{ pending: number; dead: number }> {
  const pending = yield* exec(
    sql,
    "UPDATE webhook_deliveries SET next_at = ?, updated_at = ? WHERE endpoint_id = ? AND state = 'pending'",
    [now, now, endpointId],
  );
  return { pending, dead: yield* replayDead(sql, endpointId, now) };
}

export function* prune(sql: Sql, before: number): Flow<number> {
  yield* exec(sql, "DELETE FROM webhook_deliveries WHERE state = 'delivered' AND updated_at < ?", [
    before,
  ]);
  return yield* exec(
    sql,
    'DELETE FROM webhook_events WHERE created_at < ? AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_seq = webhook_events.seq)',
    [before],
  );
}

/** How many of the endpoint's secrets still sign. */
export function signingCount(r: EndpointRow, now: number): number {
  return (JSON.parse(r.secrets) as { expiresAt: number | null }[]).filter(
    (s) => s.expiresAt === null || s.expiresAt > now,
  ).length;
}

const ENDPOINT =
  'SELECT id, url, events, description, created_at, secrets, last_attempt_at, last_success_at, last_error FROM webhook_endpoints';

/** The endpoint's row, if any. */
export function* findEndpoint(sql: Sql, id: string): Flow<EndpointRow | undefined> {
  return yield* row<EndpointRow>(sql, `${ENDPOINT} WHERE id = ?`, [id]);
}

/**
 * The endpoint's row.
 * @throws LatchkeyError NOT_FOUND for an unknown endpoint.
 */
export function* endpointRow(sql: Sql, id: string): Flow<EndpointRow> {
  const r = yield* findEndpoint(sql, id);
  if (!r) throw new LatchkeyError('NOT_FOUND', 'no such webhook endpoint');
  return r;
}

/** The endpoint as the admin API shows it, with its delivery counts. */
export function* endpointInfo(sql: Sql, r: EndpointRow, now: number): Flow<WebhookEndpointInfo> {
  const counts = yield* rows<{ state: string; n: number }>(
    sql,
    'SELECT state, COUNT(*) AS n FROM webhook_deliveries WHERE endpoint_id = ? GROUP BY state',
    [r.id],
  );
  const n = (s: string): number => Number(counts.find((c) => c.state === s)?.n ?? 0);
  return {
    id: r.id,
    url: r.url,
    events: r.events === null ? null : (JSON.parse(r.events) as WebhookEventType[]),
    description: r.description,
    createdAt: r.created_at,
    secrets: Math.max(1, signingCount(r, now)),
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

/** One endpoint's info, or null when unknown. */
export function* endpoint(sql: Sql, id: string, now: number): Flow<WebhookEndpointInfo | null> {
  const r = yield* findEndpoint(sql, id);
  return r ? yield* endpointInfo(sql, r, now) : null;
}

/** Every endpoint's info, oldest first. */
export function* listEndpoints(sql: Sql, now: number): Flow<WebhookEndpointInfo[]> {
  const all = yield* rows<EndpointRow>(sql, `${ENDPOINT} ORDER BY created_at, id`, []);
  const out: WebhookEndpointInfo[] = [];
  for (const r of all) out.push(yield* endpointInfo(sql, r, now));
  return out;
}
