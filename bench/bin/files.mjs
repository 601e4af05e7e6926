#!/usr/bin/env node
// Attachments throughput alone (bench/src/files-bench.ts): `node bench/bin/files.mjs [--mb 50]
// [--repeats 3]`. Registers the tsx loader like bench.mjs; the last stdout line is the JSON result.
import { register } from 'tsx/esm/api';

register();
const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] !== undefined ? Number(process.argv[i + 1]) : dflt;
};
const { filesBench } = await import('../src/files-bench.ts');
const result = await filesBench({ mb: arg('--mb', 50), repeats: arg('--repeats', 3) });
process.stdout.write(`${JSON.stringify(result)}\n`);
