/** What one load run of the benchmark measured (main.ts runs it, chart.ts draws it). */
import type { RunResult, SystemKind } from './load/worker.ts';

export interface ServerUsage {
  /** Relay CPU during the measurement window, in % of one core. */
  cpuPercent: number;
  rssBytes: number;
  /** The relay's event-loop delay over the measurement window: p99 and maximum (ms). */
  loopP99Ms: number;
  loopMaxMs: number;
}

export interface LoadResult {
  system: SystemKind;
  size: number;
  repeat: number;
  /** SQLite durability of the Latchkey relay (the others store nothing). */
  durability: 'normal' | 'full';
  connections: number;
  /** Opening the connections (for Latchkey: handshake, auth, ready, join, joined). */
  connectMs: number;
  throughput: RunResult & ServerUsage;
  /** At the first offered rate of the plan (5,000 msg/s); absent in a throughput-only run. */
  latency: RunResult & ServerUsage;
  /** At each offered rate of the plan, highest first (latency is the first). */
  latencies: (RunResult & ServerUsage & { rate: number })[];
}

/** Memory per idle connection of one system (main.ts measures it). */
export interface IdleResult {
  system: SystemKind;
  connections: number;
  connectMs: number;
  rssBeforeBytes: number;
  rssAfterBytes: number;
  bytesPerConnection: number;
  heapBytesPerConnection: number;
}
