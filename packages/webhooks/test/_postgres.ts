/**
 * A PostgreSQL server for the shared-outbox tests: LATCHKEY_TEST_PG_URL (`.ci/run` exports it).
 * Without it the tests skip with the reason printed, except under CI=true where that fails
 * (as packages/keys/test/_postgres.ts and packages/relay/test/_services.ts do).
 */
import { openPool } from '@latchkey/storage/postgres';

export interface TestPostgres {
  /** A fresh database on the server, created here. */
  newDatabase(): Promise<string>;
}

/**
 * The server for a test file, or null (reason printed) when unavailable outside CI.
 * @throws Error under CI=true when LATCHKEY_TEST_PG_URL is not set.
 */
export function testPostgres(what: string): TestPostgres | null {
  const url = process.env.LATCHKEY_TEST_PG_URL;
  if (!url) {
    const reason = `${what}: needs PostgreSQL (set LATCHKEY_TEST_PG_URL)`;
    if (process.env.CI === 'true') throw new Error(reason);
    console.warn(`skipping ${reason}`);
    return null;
  }
  return {
    async newDatabase() {
      const name = `lk_hooks_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
      const pool = openPool({ url, max: 1 });
      try {
        await pool.query(`CREATE DATABASE ${name}`);
      } finally {
        await pool.end();
      }
      const u = new URL(url);
      u.pathname = `/${name}`;
      return u.toString();
    },
  };
}
