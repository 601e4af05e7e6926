/**
 * Claiming due deliveries on the shared PostgreSQL outbox (outbox-pg.ts), safe with any number
 * of processes polling at once. In one transaction:
 * - each endpoint's head (its lowest pending delivery: only the head is ever due, which keeps
 *   per-endpoint order) that is due and not claimed, or whose claim's lease ran out, is locked
 *   with `FOR UPDATE OF d SKIP LOCKED`: a head another process is claiming right now is skipped,
 *   not waited for, and a row updated since this statement's snapshot is re-checked (a head
 *   delivered or claimed meanwhile no longer qualifies);
 * - an endpoint with a live claim on any of its deliveries is passed over (a dead letter replayed
 *   while a later delivery is in flight waits for that call), so one call per endpoint at a time
 *   holds across processes (but for a replay committed while another process's claim of the
 *   endpoint is itself still uncommitted, which can start both calls at once);
 * - the locked heads get this process's claim (`claimed_by`) and a lease (`lease_until`);
 * - the answer says when to look again: the earliest retry time or lease end still ahead.
 * The outcome (outbox-attempts.ts) counts only under the same claim and clears it; a process
 * that dies mid-call leaves its claim to run out, then another process takes the delivery over.
 */
import { exec, rows, type Flow, type Sql } from '@latchkey/storage';

/** A claimed head with what the call needs (secrets still sealed). */
export interface ClaimedRow {
  endpoint_id: string;
  event_seq: number;
  endpoint_seq: number;
  attempts: number;
  event_id: string;
  payload: string;
  url: string;
  secrets: string;
}

/** Every endpoint's head delivery, joined as `d` (and the endpoint as `p`). */
const HEADS = `FROM webhook_endpoints p
  JOIN LATERAL (SELECT x.event_seq FROM webhook_deliveries x
                 WHERE x.endpoint_id = p.id AND x.state = 'pending'
                 ORDER BY x.event_seq LIMIT 1) h ON true
  JOIN webhook_deliveries d ON d.endpoint_id = p.id AND d.event_seq = h.event_seq`;

export interface ClaimRequest {
  now: number;
  /** Endpoints with a call of this process in flight (not claimed again). */
  busy: readonly string[];
  /** Heads to claim at most. */
  limit: number;
  /** This process's claim id. */
  claim: string;
  leaseUntil: number;
}

export function* claimDue(
  sql: Sql,
  r: ClaimRequest,
): Flow<{ claimed: ClaimedRow[]; nextAt: number | null }> {
  const picked =
    r.limit <= 0
      ? []
      : yield* rows<{ endpoint_id: string; event_seq: number }>(
          sql,
          `SELECT d.endpoint_id, d.event_seq ${HEADS}
            WHERE d.state = 'pending' AND d.next_at <= ?
              AND (d.lease_until IS NULL OR d.lease_until <= ?)
              AND NOT (p.id = ANY (SELECT jsonb_array_elements_text(?::jsonb)))
              AND NOT EXISTS (SELECT 1 FROM webhook_deliveries y
                               WHERE y.endpoint_id = p.id AND y.state = 'pending'
                                 AND y.lease_until > ?)
            ORDER BY d.next_at, d.endpoint_id LIMIT ?
            FOR UPDATE OF d SKIP LOCKED`,
          [r.now, r.now, JSON.stringify(r.busy), r.now, r.limit],
        );
  const claimed: ClaimedRow[] = [];
  for (const p of picked) {
    const got = yield* rows<ClaimedRow>(
      sql,
      `UPDATE webhook_deliveries d SET claimed_by = ?, lease_until = ?
         FROM webhook_events e, webhook_endpoints p
        WHERE d.endpoint_id = ? AND d.event_seq = ? AND e.seq = d.event_seq AND p.id = d.endpoint_id
        RETURNING d.endpoint_id, d.event_seq, d.endpoint_seq, d.attempts, e.id AS event_id,
                  e.payload, p.url, p.secrets`,
      [r.claim, r.leaseUntil, p.endpoint_id, p.event_seq],
    );
    claimed.push(...got);
  }
  const next = yield* rows<{ next: number | null }>(
    sql,
    `SELECT MIN(GREATEST(d.next_at, COALESCE(d.lease_until, 0))) AS next ${HEADS}
      WHERE d.state = 'pending' AND GREATEST(d.next_at, COALESCE(d.lease_until, 0)) > ?`,
    [r.now],
  );
  const n = next[0]?.next;
  return { claimed, nextAt: n === null || n === undefined ? null : Number(n) };
}

/** Gives a claim up (the delivery is due again at once for any process). */
export function* releaseClaim(
  sql: Sql,
  endpointId: string,
  eventSeq: number,
  claim: string,
): Flow<number> {
  return yield* exec(
    sql,
    "UPDATE webhook_deliveries SET claimed_by = NULL, lease_until = NULL WHERE endpoint_id = ? AND event_seq = ? AND claimed_by = ? AND state = 'pending'",
    [endpointId, eventSeq, claim],
  );
}
