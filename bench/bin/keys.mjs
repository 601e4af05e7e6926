#!/usr/bin/env node
// The key-service join burst alone (bench/src/keys-bench.ts): `node bench/bin/keys.mjs
// [--participants N] [--warm N]`. Registers the tsx loader like bench.mjs; the last stdout line
// is the JSON result. BENCH_CPU_PROF=DIR profiles the key service (node --cpu-prof).
import { register } from 'tsx/esm/api';

register();
const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] !== undefined ? Number(process.argv[i + 1]) : dflt;
};
const { keysBench } = await import('../src/keys-bench.ts');
const result = await keysBench({
  participants: arg('--participants', 1000),
  warmRepeats: arg('--warm', 2),
});
process.stdout.write(`${JSON.stringify(result)}\n`);
