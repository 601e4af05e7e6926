/**
 * Exponential backoff, written once for every retry loop (client reconnects and resends, the
 * key manager client, webhook deliveries, destroy notices, the syslog stream, the web UI).
 * Attempt 0 waits `baseMs`, each further attempt doubles it, capped at `maxMs`; the jitter
 * spreads clients that failed together: `full` draws from [0, d], `equal` from [d/2, d]
 * ("Exponential Backoff And Jitter", AWS Architecture Blog), `none` waits exactly d.
 */

export interface BackoffOptions {
  /** The first delay (ms). */
  baseMs: number;
  /** The largest delay (ms). */
  maxMs: number;
  /** Default `none`. */
  jitter?: 'none' | 'full' | 'equal';
  /** A number in [0, 1) (default Math.random), for tests. */
  random?: () => number;
}

/**
 * The delay before retry number `attempt` (0 for the first retry), in ms. A base above the cap
 * waits the cap.
 * @throws RangeError for a negative or non-integer attempt, or delays that are not finite and
 *   non-negative.
 */
export function backoffDelay(attempt: number, opts: BackoffOptions): number {
  if (!Number.isSafeInteger(attempt) || attempt < 0) throw new RangeError('attempt');
  const { baseMs, maxMs } = opts;
  if (!(Number.isFinite(baseMs) && Number.isFinite(maxMs) && baseMs >= 0 && maxMs >= 0))
    throw new RangeError('backoff delays');
  // 2 ** 40 already exceeds any cap we use; keep the exponent bounded.
  const d = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 40));
  const r = (opts.random ?? Math.random)();
  switch (opts.jitter ?? 'none') {
    case 'full':
      return r * d;
    case 'equal':
      return d / 2 + r * (d / 2);
    case 'none':
      return d;
  }
}
