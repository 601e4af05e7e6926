/**
 * What degraded mode declares (docs/key-management.md "Degraded mode"; degraded-cache.ts keeps
 * the state): the log line of each change of state, the `keyCache` object of the key service's
 * `/healthz`, and its `/metrics` in the Prometheus text format. Counts, times and error codes
 * only: never a key or a contact id.
 */

/** A change of state; `reason` is the failure's short message, never a secret or contact id. */
export type DegradedStateChange =
  | { state: 'degraded'; since: number; code: string; reason: string }
  | { state: 'recovered'; since: number; at: number; servedFromCache: number };

/** What `/healthz` and the metrics show. */
export interface DegradedCacheStatus {
  /** Whether the cache is on (ttlMs > 0). */
  enabled: boolean;
  /** The key manager is unreachable and keys are being served from the cache. */
  degraded: boolean;
  /** Since when (Unix ms), while degraded. */
  since?: number;
  /** The failure that made (or keeps) it degraded: error code and short message. */
  lastError?: { at: number; code: string; reason: string };
  cacheTtlMs: number;
  /** Content keys held now. */
  cached: number;
  /** Answers given from the cache since start (keys and current epochs). */
  servedFromCache: number;
  /** Answers given from the cache in the current degraded period (0 when not degraded). */
  servedWhileDegraded: number;
  /** Calls that found the key manager unreachable and nothing usable cached, since start. */
  missedWhileDegraded: number;
  /** Times the service entered degraded mode since start. */
  degradedPeriods: number;
}

/** The log line of a state change: no key, no contact id. */
export function formatDegradedState(change: DegradedStateChange): string {
  return change.state === 'degraded'
    ? `key manager: degraded (serving cached keys): ${change.code}: ${change.reason}`
    : `key manager: recovered (degraded for ${Math.max(0, Math.round((change.at - change.since) / 1000))} s, ${change.servedFromCache} answers served from the cache)`;
}

/** The `keyCache` object of `/healthz` (absent while the cache is off: today's answer). */
export interface KeyCacheHealth {
  ttlSeconds: number;
  degraded: boolean;
  /** ISO 8601, while degraded. */
  since?: string;
  entries: number;
  servedFromCache: number;
  missedWhileDegraded: number;
  /** The failure that made it degraded: `at` ISO 8601, code and short message. */
  lastError?: { at: string; code: string; reason: string };
}

/** `/healthz`'s `keyCache`, or undefined when the cache is off. */
export function keyCacheHealth(s: DegradedCacheStatus): KeyCacheHealth | undefined {
  if (!s.enabled) return undefined;
  return {
    ttlSeconds: s.cacheTtlMs / 1000,
    degraded: s.degraded,
    ...(s.since === undefined ? {} : { since: new Date(s.since).toISOString() }),
    entries: s.cached,
    servedFromCache: s.servedFromCache,
    missedWhileDegraded: s.missedWhileDegraded,
    ...(s.lastError === undefined
      ? {}
      : {
          lastError: {
            at: new Date(s.lastError.at).toISOString(),
            code: s.lastError.code,
            reason: s.lastError.reason,
          },
        }),
  };
}

/**
 * The degraded-mode metrics in the Prometheus text format (0.0.4), for the key service's
 * `/metrics`. Counts only, no contact id.
 */
export function renderDegradedCacheMetrics(s: DegradedCacheStatus): string {
  const m = (name: string, type: 'gauge' | 'counter', help: string, value: number): string =>
    `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name} ${value}`;
  return [
    m(
      'latchkey_keyd_key_manager_degraded',
      'gauge',
      '1 while the key manager is unreachable and cached keys are served, else 0.',
      s.degraded ? 1 : 0,
    ),
    m(
      'latchkey_keyd_key_manager_degraded_since_seconds',
      'gauge',
      'Unix time the current degraded period began (0 when not degraded).',
      s.since === undefined ? 0 : s.since / 1000,
    ),
    m(
      'latchkey_keyd_key_cache_ttl_seconds',
      'gauge',
      'How long a fetched key may be served while the key manager is unreachable (0: off).',
      s.cacheTtlMs / 1000,
    ),
    m('latchkey_keyd_key_cache_entries', 'gauge', 'Content keys held in memory.', s.cached),
    m(
      'latchkey_keyd_key_cache_served_total',
      'counter',
      'Answers given from the cache while the key manager was unreachable.',
      s.servedFromCache,
    ),
    m(
      'latchkey_keyd_key_cache_misses_total',
      'counter',
      'Calls refused with KEY_UNAVAILABLE while the key manager was unreachable (nothing cached).',
      s.missedWhileDegraded,
    ),
    m(
      'latchkey_keyd_key_manager_degraded_periods_total',
      'counter',
      'Times the key service entered degraded mode.',
      s.degradedPeriods,
    ),
    '',
  ].join('\n');
}
