/**
 * Command line of the cluster benchmark (bench/bin/cluster.mjs, and `pnpm bench --with-cluster`
 * through main.ts): options, the results file, the one-line JSON summary on stdout.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { clusterBench, type ClusterResult } from './cluster-bench.ts';

function numberArg(args: readonly string[], name: string): number | undefined {
  const i = args.indexOf(name);
  const v = i >= 0 ? args[i + 1] : undefined;
  return v === undefined ? undefined : Number(v);
}

/** Runs the cluster bench as `args` ask; writes the results file unless `--quick`. */
export async function runClusterBench(args: readonly string[]): Promise<ClusterResult> {
  const quick = args.includes('--quick');
  const participants = numberArg(args, '--participants');
  const contacts = numberArg(args, '--contacts');
  const repeats = numberArg(args, '--repeats');
  const i = args.indexOf('--only');
  const only = i >= 0 ? (args[i + 1]?.split(',') as ('keys' | 'chat')[]) : undefined;
  const result = await clusterBench({
    quick,
    ...(participants === undefined ? {} : { participants }),
    ...(contacts === undefined ? {} : { contacts }),
    ...(repeats === undefined ? {} : { repeats }),
    ...(only === undefined ? {} : { only }),
  });
  if (!quick) {
    const dir = fileURLToPath(new URL('../results/', import.meta.url));
    mkdirSync(dir, { recursive: true });
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const machine = {
      nproc: cpus().length,
      cpu: cpus()[0]?.model ?? 'unknown',
      memoryBytes: totalmem(),
      node: process.version,
    };
    writeFileSync(
      `${dir}cluster-${stamp}.json`,
      `${JSON.stringify({ machine, ...result }, null, 2)}\n`,
    );
    process.stderr.write(`[cluster] wrote bench/results/cluster-${stamp}.json\n`);
  }
  return result;
}

/** bin/cluster.mjs: the summary is the last stdout line. */
export async function runCluster(args: readonly string[]): Promise<void> {
  const r = await runClusterBench(args);
  process.stdout.write(`${JSON.stringify(r.summary)}\n`);
}
