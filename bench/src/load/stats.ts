/** Latency samples and their percentiles (nearest rank), in milliseconds. */
export interface Percentiles {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export function percentiles(samples: readonly number[]): Percentiles {
  if (samples.length === 0) return { count: 0, p50: 0, p95: 0, p99: 0, max: 0 };
  const s = Float64Array.from(samples).sort();
  const at = (q: number): number => {
    const v = s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? 0;
    return Math.round(v * 1000) / 1000;
  };
  return { count: s.length, p50: at(0.5), p95: at(0.95), p99: at(0.99), max: at(1) };
}
