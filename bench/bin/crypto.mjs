#!/usr/bin/env node
// The crypto figures alone (bench/src/crypto-bench.ts): `node bench/bin/crypto.mjs [--sizes
// 200,4096] [--ms N] [--repeats N] [--seal-open-only]`. Registers the tsx loader like bench.mjs;
// one JSON line per repeat, the last stdout line the list of results. `--seal-open-only` runs only
// the alternating slices (envelope seal+open as the client does it, its floor, the envelope
// alone). BENCH_CPU_PROF=DIR runs the same under `node --cpu-prof` into DIR.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { register } from 'tsx/esm/api';

const prof = process.env['BENCH_CPU_PROF'];
if (prof) {
  const env = { ...process.env };
  delete env['BENCH_CPU_PROF'];
  const args = ['--cpu-prof', `--cpu-prof-dir=${prof}`, fileURLToPath(import.meta.url)];
  const r = spawnSync(process.execPath, [...args, ...process.argv.slice(2)], {
    env,
    stdio: 'inherit',
  });
  process.exit(r.status ?? 1);
}

register();
const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : dflt;
};
const sizes = String(arg('--sizes', '4096')).split(',').map(Number);
const ms = Number(arg('--ms', 1000));
const repeats = Number(arg('--repeats', 1));
const sealOpenOnly = process.argv.includes('--seal-open-only');
const { cryptoBench } = await import('../src/crypto-bench.ts');
const results = [];
for (let r = 0; r < repeats; r++) {
  for (const size of sizes) {
    const result = await cryptoBench(size, ms, { sealOpenOnly });
    const ratio = Math.round((result.sealOpenFloor / result.envelopeSealOpen) * 100) / 100;
    const line = { ...result, seal_open_vs_floor: ratio };
    results.push(line);
    process.stderr.write(`${JSON.stringify(line)}\n`);
  }
}
process.stdout.write(`${JSON.stringify(results)}\n`);
