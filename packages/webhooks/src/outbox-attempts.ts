/**
 * The outcome of each delivery attempt in the webhook outbox (outbox.ts on SQLite, outbox-pg.ts
 * on PostgreSQL): delivered, or failed and retried after an exponential backoff with equal
 * jitter until `maxAgeMs` after the event was queued, then dead-lettered; and the outcome of a
 * test call. Each is a flow (@latchkey/storage `Flow`), run in one transaction by either driver.
 *
 * `claim`: on PostgreSQL a delivery is claimed by one process (outbox-pg-claim.ts) and only that
 * claim's outcome counts: a process whose lease was taken over finds no row to update, so the
 * row keeps the outcome of the process that took it over. SQLite has no claims (null).
 */
import { backoffDelay, type WebhookError } from '@latchkey/protocol';
import { exec, row, type Flow, type Sql, type SqlValue } from '@latchkey/storage';

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

/** Which delivery, and (PostgreSQL) whose claim on it. */
export interface AttemptRef {
  endpointId: string;
  eventSeq: number;
  /** The claiming process's id; null on SQLite. */
  claim: string | null;
}

/** The WHERE clause of the claimed pending delivery, and its arguments. */
function pendingRow(ref: AttemptRef): { where: string; args: SqlValue[] } {
  const where = "endpoint_id = ? AND event_seq = ? AND state = 'pending'";
  return ref.claim === null
    ? { where, args: [ref.endpointId, ref.eventSeq] }
    : { where: `${where} AND claimed_by = ?`, args: [ref.endpointId, ref.eventSeq, ref.claim] };
}

/** On PostgreSQL an outcome also ends the claim. */
function unclaim(ref: AttemptRef): string {
  return ref.claim === null ? '' : ', claimed_by = NULL, lease_until = NULL';
}

/**
 * A delivery went through: delivered, and the endpoint's status says so. Returns false when the
 * delivery was no longer this claim's (taken over after its lease, or already recorded).
 */
export function* markDelivered(sql: Sql, ref: AttemptRef, now: number): Flow<boolean> {
  const { where, args } = pendingRow(ref);
  const n = yield* exec(
    sql,
    `UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1, updated_at = ?, last_error = NULL${unclaim(ref)} WHERE ${where}`,
    [now, ...args],
  );
  yield* exec(
    sql,
    'UPDATE webhook_endpoints SET last_attempt_at = ?, last_success_at = ?, last_error = NULL WHERE id = ?',
    [now, now, ref.endpointId],
  );
  return n > 0;
}

/**
 * Records a failed attempt: schedules the next one (exponential backoff with jitter), or
 * dead-letters the delivery when that would be later than maxAgeMs after it was queued.
 * Returns whether it was dead-lettered.
 */
export function* markFailed(
  sql: Sql,
  a: AttemptRef & { error: WebhookError; now: number },
  retry: RetryPolicy,
  random: () => number,
): Flow<boolean> {
  const { endpointId, error, now } = a;
  const { where, args } = pendingRow(a);
  const d = yield* row<{ attempts: number; first_at: number }>(
    sql,
    `SELECT attempts, first_at FROM webhook_deliveries WHERE ${where}`,
    args,
  );
  const err = JSON.stringify(error);
  yield* exec(
    sql,
    'UPDATE webhook_endpoints SET last_attempt_at = ?, last_error = ? WHERE id = ?',
    [now, err, endpointId],
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
  yield* exec(
    sql,
    `UPDATE webhook_deliveries SET state = ?, attempts = ?, next_at = ?, updated_at = ?, last_error = ?${unclaim(a)} WHERE ${where}`,
    [dead ? 'dead' : 'pending', attempts, dead ? now : next, now, err, ...args],
  );
  return dead;
}

/** Records the outcome of a test call in the endpoint's status. */
export function* recordTest(
  sql: Sql,
  endpointId: string,
  error: WebhookError | null,
  now: number,
): Flow<void> {
  if (error)
    yield* exec(
      sql,
      'UPDATE webhook_endpoints SET last_attempt_at = ?, last_error = ? WHERE id = ?',
      [now, JSON.stringify(error), endpointId],
    );
  else
    yield* exec(
      sql,
      'UPDATE webhook_endpoints SET last_attempt_at = ?, last_success_at = ?, last_error = NULL WHERE id = ?',
      [now, now, endpointId],
    );
}
