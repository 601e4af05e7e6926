#!/usr/bin/env node
// `pnpm bench`: the workspace ships TypeScript source, so the tsx loader is registered before
// the benchmark's entry module is imported. `--quick` runs the under-a-minute subset.
import { register } from 'tsx/esm/api';

register();
await import('../src/main.ts');
