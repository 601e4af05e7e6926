/**
 * The outcome of each delivery attempt in the webhook outbox (outbox.ts): delivered, or failed
 * and retried after an exponential backoff with equal jitter until `maxAgeMs` after the event
 * was queued, then dead-lettered; and the outcome of a test call. One transaction each.
 */
import { backoffDelay, type WebhookError } from '@latchkey/protocol';
import type { SqliteDatabase } from '@latchkey/storage/sqlite';

export interface RetryPolicy {
  /** First retry delay in ms (default 5 s); doubles per attempt. */
  baseMs: number;
  /** Longest delay between attempts (default 1 h). */
  maxDelayMs: number;
  /** Retries stop this long after the event was queued (default 24 h). */
  maxAgeMs: number;
}
export const DEFAULT_RETRY: RetryPolicy = {
  baseMs: 5_000,
  maxDelayMs: 3_600_000,
  maxAgeMs: 86_400_000,
};

/** A delivery went through: delivered, and the endpoint's status says so. */
export function markDelivered(
  db: SqliteDatabase,
  endpointId: string,
  eventSeq: number,
  now: number,
): void {
  db.transaction(() => {
    db.prepare(
      "UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1, updated_at = ?, last_error = NULL WHERE endpoint_id = ? AND event_seq = ? AND state = 'pending'",
    ).run(now, endpointId, eventSeq);
    db.prepare(
      'UPDATE webhook_endpoints SET last_attempt_at = ?, last_success_at = ?, last_error = NULL WHERE id = ?',
    ).run(now, now, endpointId);
  })();
}

/**
 * Records a failed attempt: schedules the next one (exponential backoff with jitter), or
 * dead-letters the delivery when that would be later than maxAgeMs after it was queued.
 * Returns whether it was dead-lettered.
 */
export function markFailed(
  db: SqliteDatabase,
  a: { endpointId: string; eventSeq: number; error: WebhookError; now: number },
  retry: RetryPolicy,
  random: () => number,
): boolean {
  const { endpointId, eventSeq, error, now } = a;
  return db.transaction(() => {
    const d = db
      .prepare(
        "SELECT attempts, first_at FROM webhook_deliveries WHERE endpoint_id = ? AND event_seq = ? AND state = 'pending'",
      )
      .get(endpointId, eventSeq) as { attempts: number; first_at: number } | undefined;
    const err = JSON.stringify(error);
    db.prepare('UPDATE webhook_endpoints SET last_attempt_at = ?, last_error = ? WHERE id = ?').run(
      now,
      err,
      endpointId,
    );
    if (!d) return false;
    const attempts = d.attempts + 1;
    const { baseMs, maxDelayMs, maxAgeMs } = retry;
    // "Equal jitter": half fixed, half random, so retries of many endpoints spread out.
    const delay = Math.round(
      backoffDelay(attempts - 1, {
        baseMs,
        maxMs: maxDelayMs,
        jitter: 'equal',
        random,
      }),
    );
    const next = now + delay;
    const dead = next > d.first_at + maxAgeMs;
    db.prepare(
      'UPDATE webhook_deliveries SET state = ?, attempts = ?, next_at = ?, updated_at = ?, last_error = ? WHERE endpoint_id = ? AND event_seq = ?',
    ).run(dead ? 'dead' : 'pending', attempts, dead ? now : next, now, err, endpointId, eventSeq);
    return dead;
  })();
}

/** Records the outcome of a test call in the endpoint's status. */
export function recordTest(
  db: SqliteDatabase,
  endpointId: string,
  error: WebhookError | null,
  now: number,
): void {
  if (error)
    db.prepare('UPDATE webhook_endpoints SET last_attempt_at = ?, last_error = ? WHERE id = ?').run(
      now,
      JSON.stringify(error),
      endpointId,
    );
  else
    db.prepare(
      'UPDATE webhook_endpoints SET last_attempt_at = ?, last_success_at = ?, last_error = NULL WHERE id = ?',
    ).run(now, now, endpointId);
}
