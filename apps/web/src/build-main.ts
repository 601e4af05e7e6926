/**
 * `pnpm --filter @latchkey/web build [--development]`: the same build that `startWeb` runs when
 * dist is stale; `--development` keeps source maps (never for what is deployed).
 */
import { buildWeb, DEFAULT_DIST } from './build.ts';

const development = process.argv.includes('--development');
await buildWeb(DEFAULT_DIST, { development });
console.log(`built ${DEFAULT_DIST}${development ? ' (development, with source maps)' : ''}`);
