/** What one load run of the benchmark measured (main.ts runs it, chart.ts draws it). */
import type { RunResult, SystemKind } from './load/worker.ts';

export interface ServerUsage {
  /** Relay CPU during the measurement window, in % of one core. */
  cpuPercent: number;
  rssBytes: number;
}

export interface LoadResult {
  system: SystemKind;
  size: number;
  repeat: number;
  connections: number;
  throughput: RunResult & ServerUsage;
  latency: RunResult & ServerUsage;
}
