/**
 * The relay's own view of a measurement window of the cluster benchmark, from its Prometheus
 * endpoint (`GET /metrics`, packages/relay/src/metrics.ts; loopback is allowed): envelopes
 * stored, group commits and their mean latency, hence the mean batch, envelopes read back to
 * fill fan-out gaps, and the mean publish-to-receipt delay of the fan-out. Two readings, before
 * and after the window, give the deltas.
 */
export interface RelayCounters {
  messages: number;
  commits: number;
  commitSeconds: number;
  gapRepairs: number;
  lagCount: number;
  lagSeconds: number;
}

export interface RelayWindow {
  /** Envelopes stored through this relay per second. */
  storedPerSecond: number;
  commitsPerSecond: number;
  /** Mean envelopes per group commit. */
  meanBatch: number;
  meanCommitMs: number;
  gapRepairs: number;
  meanFanoutLagMs: number;
}

function metric(text: string, name: string): number {
  const m = new RegExp(`^${name} ([0-9.eE+-]+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

/** Reads the counters of the relay on `port`. @throws Error when /metrics does not answer. */
export async function relayCounters(port: number): Promise<RelayCounters> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  if (res.status !== 200) throw new Error(`relay /metrics: HTTP ${res.status}`);
  const t = await res.text();
  return {
    messages: metric(t, 'latchkey_relay_messages_total'),
    commits: metric(t, 'latchkey_relay_commit_seconds_count'),
    commitSeconds: metric(t, 'latchkey_relay_commit_seconds_sum'),
    gapRepairs: metric(t, 'latchkey_relay_fanout_gap_repairs_total'),
    lagCount: metric(t, 'latchkey_relay_fanout_lag_seconds_count'),
    lagSeconds: metric(t, 'latchkey_relay_fanout_lag_seconds_sum'),
  };
}

const r1 = (x: number): number => Math.round(x * 10) / 10;

export function relayWindow(a: RelayCounters, b: RelayCounters, seconds: number): RelayWindow {
  const commits = b.commits - a.commits;
  const messages = b.messages - a.messages;
  const lag = b.lagCount - a.lagCount;
  return {
    storedPerSecond: Math.round(messages / seconds),
    commitsPerSecond: r1(commits / seconds),
    meanBatch: commits > 0 ? r1(messages / commits) : 0,
    meanCommitMs: commits > 0 ? r1(((b.commitSeconds - a.commitSeconds) / commits) * 1000) : 0,
    gapRepairs: b.gapRepairs - a.gapRepairs,
    meanFanoutLagMs: lag > 0 ? r1(((b.lagSeconds - a.lagSeconds) / lag) * 1000) : 0,
  };
}
