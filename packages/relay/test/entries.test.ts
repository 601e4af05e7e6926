/**
 * Backends load only when chosen: importing `@latchkey/relay` (the SQLite path) loads neither
 * `pg` nor `ioredis`; `@latchkey/relay/postgres` and `@latchkey/relay/redis` do. Checked in a
 * fresh Node process (the test runner itself may have loaded them).
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const PKG = join(dirname(fileURLToPath(import.meta.url)), '..');

const SCRIPT = `
import { createRequire } from 'node:module';
const req = createRequire(import.meta.url);
const loaded = () => {
  const names = new Set();
  for (const k of Object.keys(req.cache)) {
    const m = /node_modules\\/(?:\\.pnpm\\/[^/]+\\/node_modules\\/)?(pg|ioredis)\\//.exec(k);
    if (m) names.add(m[1]);
  }
  return [...names].sort();
};
const out = {};
await import('@latchkey/relay');
out.main = loaded();
await import('@latchkey/relay/postgres');
out.postgres = loaded();
await import('@latchkey/relay/redis');
out.redis = loaded();
console.log(JSON.stringify(out));
`;

describe('package entries', () => {
  it('the main entry loads neither pg nor ioredis; the backend entries do', () => {
    const r = spawnSync(
      process.execPath,
      ['--conditions=@latchkey/source', '--import', 'tsx', '--input-type=module', '-e', SCRIPT],
      { cwd: PKG, encoding: 'utf8', timeout: 60_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}')).toEqual({
      main: [],
      postgres: ['pg'],
      redis: ['ioredis', 'pg'],
    });
  });
});
