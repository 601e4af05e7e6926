#!/usr/bin/env node
// The cluster benchmark alone (issue 17, bench/src/cluster-bench.ts): `node bench/bin/cluster.mjs
// [--quick] [--repeats N] [--participants N] [--contacts N] [--only keys,chat]`. Needs PostgreSQL and Redis:
// BENCH_PG_URL / BENCH_REDIS_URL, else throwaway local servers. The last stdout line is the JSON
// summary; a run without --quick also writes bench/results/cluster-<timestamp>.json.
import { register } from 'tsx/esm/api';

register();
const { runCluster } = await import('../src/cluster-main.ts');
await runCluster(process.argv.slice(2));
