#!/usr/bin/env node
// The `latchkey` command. Workspace packages ship TypeScript source, so the tsx loader
// is registered before the CLI's entry module is imported.
import { register } from 'tsx/esm/api';

register();
await import('../src/main.ts');
