/** `pnpm --filter @latchkey/web build`: the same build that `startWeb` runs when dist is stale. */
import { buildWeb, DEFAULT_DIST } from './build.ts';

await buildWeb(DEFAULT_DIST);
console.log(`built ${DEFAULT_DIST}`);
