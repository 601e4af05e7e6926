/**
 * The webhook outbox's administration (outbox.ts; docs/webhooks.md "Admin API and command line"):
 * reading an endpoint with its counts, listing dead letters, replaying them, retrying an endpoint now, pruning what no endpoint needs. Each
 * is one transaction on the outbox's database; the outbox checks the endpoint first.
 */
import {
  LatchkeyError,
  type DeadLetter,
  type WebhookEndpointInfo,
  type WebhookError,
  type WebhookEventType,
} from '@latchkey/protocol';
import type { SqliteDatabase } from '@latchkey/storage/sqlite';
import type { EndpointRow } from './outbox-schema.ts';

export function deadLetters(db: SqliteDatabase, endpointId: string, limit: number): DeadLetter[] {
  const rows = db
    .prepare(
      `SELECT e.id, e.type, e.created_at, d.endpoint_seq, d.attempts, d.updated_at, d.last_error FROM webhook_deliveries d
         JOIN webhook_events e ON e.seq = d.event_seq
        WHERE d.endpoint_id = ? AND d.state = 'dead' ORDER BY d.event_seq LIMIT ?`,
    )
    .all(endpointId, limit) as {
    id: string;
    type: string;
    created_at: number;
    endpoint_seq: number;
    attempts: number;
    updated_at: number;
    last_error: string | null;
  }[];
  return rows.map((r) => ({
    eventId: r.id,
    sequence: r.endpoint_seq,
    type: r.type,
    createdAt: r.created_at,
    attempts: r.attempts,
    deadAt: r.updated_at,
    lastError: r.last_error === null ? null : (JSON.parse(r.last_error) as WebhookError),
  }));
}

export function replayDead(
  db: SqliteDatabase,
  endpointId: string,
  now: number,
  eventIds?: readonly string[],
): number {
  return db.transaction(() => {
    const sql = `UPDATE webhook_deliveries SET state = 'pending', attempts = 0, first_at = ?, next_at = ?, updated_at = ?
                  WHERE endpoint_id = ? AND state = 'dead'`;
    if (eventIds === undefined) return db.prepare(sql).run(now, now, now, endpointId).changes;
    const stmt = db.prepare(`${sql} AND event_seq = (SELECT seq FROM webhook_events WHERE id = ?)`);
    let n = 0;
    for (const id of eventIds) n += stmt.run(now, now, now, endpointId, id).changes;
    return n;
  })();
}

export function retryNow(
  db: SqliteDatabase,
  endpointId: string,
  now: number,
): { pending: number; dead: number } {
  return db.transaction(() => {
    const pending = db
      .prepare(
        "UPDATE webhook_deliveries SET next_at = ?, updated_at = ? WHERE endpoint_id = ? AND state = 'pending'",
      )
      .run(now, now, endpointId).changes;
    return { pending, dead: replayDead(db, endpointId, now) };
  })();
}

export function prune(db: SqliteDatabase, before: number): number {
  return db.transaction(() => {
    db.prepare("DELETE FROM webhook_deliveries WHERE state = 'delivered' AND updated_at < ?").run(
      before,
    );
    return db
      .prepare(
        'DELETE FROM webhook_events WHERE created_at < ? AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_seq = webhook_events.seq)',
      )
      .run(before).changes;
  })();
}

/** How many of the endpoint's secrets still sign. */
export function signingCount(row: EndpointRow, now: number): number {
  return (JSON.parse(row.secrets) as { expiresAt: number | null }[]).filter(
    (s) => s.expiresAt === null || s.expiresAt > now,
  ).length;
}

/**
 * The endpoint's row.
 * @throws LatchkeyError NOT_FOUND for an unknown endpoint.
 */
export function endpointRow(db: SqliteDatabase, id: string): EndpointRow {
  const row = db.prepare('SELECT * FROM webhook_endpoints WHERE id = ?').get(id) as
    EndpointRow | undefined;
  if (!row) throw new LatchkeyError('NOT_FOUND', 'no such webhook endpoint');
  return row;
}

/** The endpoint as the admin API shows it, with its delivery counts. */
export function endpointInfo(db: SqliteDatabase, r: EndpointRow, now: number): WebhookEndpointInfo {
  const counts = db
    .prepare(
      'SELECT state, COUNT(*) AS n FROM webhook_deliveries WHERE endpoint_id = ? GROUP BY state',
    )
    .all(r.id) as { state: string; n: number }[];
  const n = (s: string): number => counts.find((c) => c.state === s)?.n ?? 0;
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
