/**
 * The benchmark's one-line JSON summary (the last stdout line of `pnpm bench`; outside checks
 * read its fields, docs/benchmarks.md lists them): medians over repeats of the 200 B runs,
 * ratios taken within the same run.
 */
import type { CryptoResult } from './crypto-bench.ts';
import type { ChromiumHistoryResult } from './chromium-bench.ts';
import type { KeysResult } from './keys-bench.ts';
import type { IdleResult, LoadResult } from './load-result.ts';
import type { SystemKind } from './load/worker.ts';
import type { StorageResult } from './storage-bench.ts';

export interface SummaryInput {
  quick: boolean;
  plan: { rates: number[]; idle: number };
  load: LoadResult[];
  idle: IdleResult[];
  crypto: CryptoResult[];
  storage: StorageResult | undefined;
  storageFull?: StorageResult | undefined;
  keys: KeysResult | undefined;
  chromium?: ChromiumHistoryResult | undefined;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)] ?? 0;
}
const round2 = (x: number): number => Math.round(x * 100) / 100;
const ratio = (a: number, b: number): number | null => (b > 0 && a > 0 ? round2(a / b) : null);

export type Summary = ReturnType<typeof summarize>;

export function summarize(i: SummaryInput) {
  const at = (kind: SystemKind, durability: 'normal' | 'full' = 'normal'): LoadResult[] =>
    i.load.filter((l) => l.system === kind && l.size === 200 && l.durability === durability);
  const tput = (kind: SystemKind, durability: 'normal' | 'full' = 'normal'): number =>
    median(at(kind, durability).map((l) => l.throughput.deliveredPerSecond));
  const lat = (kind: SystemKind, f: (l: LoadResult) => number): number => median(at(kind).map(f));
  /** Wire percentile at the plan's n-th offered rate. */
  const wire = (kind: SystemKind, n: number, p: 'p50' | 'p99'): number =>
    lat(kind, (l) => l.latencies[n]?.wire[p] ?? 0);
  const c4 = i.crypto.find((c) => c.size === 4096);
  const idleOf = (kind: SystemKind): number =>
    i.idle.find((r) => r.system === kind)?.bytesPerConnection ?? 0;
  const heapOf = (kind: SystemKind): number =>
    i.idle.find((r) => r.system === kind)?.heapBytesPerConnection ?? 0;
  const low = i.plan.rates[1] ?? 0;
  const lk = tput('latchkey');
  const full = tput('latchkey', 'full');
  const connects = lat('latchkey', (l) => Math.round((l.connections * 1000) / l.connectMs));
  return {
    mode: i.quick ? 'quick' : 'full',
    latchkey_msgs_per_s: lk,
    ws_floor_msgs_per_s: tput('ws'),
    socketio_msgs_per_s: tput('socketio'),
    latchkey_vs_floor: ratio(lk, tput('ws')),
    latchkey_vs_socketio: ratio(lk, tput('socketio')),
    p50_ms: lat('latchkey', (l) => l.latency.e2e.p50),
    p99_ms: lat('latchkey', (l) => l.latency.e2e.p99),
    wire_p50_ms: wire('latchkey', 0, 'p50'),
    wire_p99_ms: wire('latchkey', 0, 'p99'),
    ws_floor_wire_p99_ms: wire('ws', 0, 'p99'),
    socketio_wire_p99_ms: wire('socketio', 0, 'p99'),
    wire_p99_vs_floor: ratio(wire('latchkey', 0, 'p99'), wire('ws', 0, 'p99')),
    offered_rate_for_latency: i.plan.rates[0] ?? 0,
    low_offered_rate: low,
    wire_p50_ms_low: wire('latchkey', 1, 'p50'),
    wire_p99_ms_low: wire('latchkey', 1, 'p99'),
    ws_floor_wire_p99_ms_low: wire('ws', 1, 'p99'),
    socketio_wire_p99_ms_low: wire('socketio', 1, 'p99'),
    relay_cpu_percent_at_max: lat('latchkey', (l) => l.throughput.cpuPercent),
    relay_cpu_us_per_msg: round2(
      lat('latchkey', (l) => (l.throughput.cpuPercent * 1e4) / l.throughput.deliveredPerSecond),
    ),
    ws_floor_cpu_us_per_msg: round2(
      lat('ws', (l) => (l.throughput.cpuPercent * 1e4) / l.throughput.deliveredPerSecond),
    ),
    latchkey_connects_per_s: connects,
    keys_fetch_per_s: i.keys?.warmFetchesPerSecond ?? null,
    keys_p50_ms: i.keys?.warmP50Ms ?? null,
    keys_p99_ms: i.keys?.warmP99Ms ?? null,
    keys_cold_fetch_per_s: i.keys?.cold.fetchesPerSecond ?? null,
    keys_cold_p99_ms: i.keys?.cold.latency.p99 ?? null,
    keys_vs_relay_connects: ratio(i.keys?.warmFetchesPerSecond ?? 0, connects),
    errors:
      (i.keys?.errors ?? 0) +
      (i.chromium?.skipped === false ? i.chromium.errors : 0) +
      i.load.reduce(
        (n, l) => n + [l.throughput, ...l.latencies].reduce((m, r) => m + r.errors, 0),
        0,
      ),
    ...(full > 0
      ? { full_durability_msgs_per_s: full, full_durability_vs_default: ratio(full, lk) }
      : {}),
    seal_open_vs_floor: c4 ? ratio(c4.sealOpenFloor, c4.envelopeSealOpen) : null,
    seal_open_per_s: c4?.envelopeSealOpen ?? null,
    seal_open_floor_per_s: c4?.sealOpenFloor ?? null,
    seal_open_vs_node_crypto: c4 ? ratio(c4.nodeCrypto, c4.envelopeSealOpen) : null,
    aead_vs_node_crypto: c4 ? ratio(c4.nodeCrypto, c4.aeadWebcrypto) : null,
    storage_single_per_s: i.storage?.singlePerSecond ?? null,
    storage_batched_per_s: i.storage?.batchedPerSecond ?? null,
    storage_full_single_per_s: i.storageFull?.singlePerSecond ?? null,
    storage_full_batched_per_s: i.storageFull?.batchedPerSecond ?? null,
    ...(i.chromium === undefined
      ? {}
      : i.chromium.skipped
        ? { chromium_history_1000_ms: null, chromium_skipped: i.chromium.reason }
        : {
            chromium_history_1000_ms: i.chromium.ms,
            chromium_history_open_ms: i.chromium.openMs,
            chromium_history_render_ms: i.chromium.renderMs,
          }),
    idle_connections: i.plan.idle,
    idle_bytes_per_conn: idleOf('latchkey'),
    ws_floor_idle_bytes_per_conn: idleOf('ws'),
    idle_vs_floor: ratio(idleOf('latchkey'), idleOf('ws')),
    idle_heap_bytes_per_conn: heapOf('latchkey'),
    ws_floor_idle_heap_bytes_per_conn: heapOf('ws'),
  };
}
