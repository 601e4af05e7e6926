/**
 * Against a real PostgreSQL: LATCHKEY_TEST_PG_URL (`.ci/run` exports it). Without it the tests
 * skip with the reason printed, except under CI=true where that fails.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LatchkeyError } from '@latchkey/protocol';
import { SchemaTooNewError } from '../src/errors.ts';
import {
  migratePostgres,
  openPool,
  transaction,
  type PgPool,
  type PgStep,
} from '../src/postgres.ts';

const given = process.env.LATCHKEY_TEST_PG_URL;
if (!given) {
  const reason = '@latchkey/storage postgres: needs LATCHKEY_TEST_PG_URL';
  if (process.env.CI === 'true') throw new Error(reason);
  console.warn(`skipping ${reason}`);
}

async function newDatabase(): Promise<string> {
  const name = `lk_storage_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  const c = new pg.Client({ connectionString: given });
  await c.connect();
  try {
    await c.query(`CREATE DATABASE ${name}`);
  } finally {
    await c.end();
  }
  const u = new URL(given as string);
  u.pathname = `/${name}`;
  return u.toString();
}

const STEPS: PgStep[] = [
  'CREATE TABLE a (x BIGINT NOT NULL)',
  async (q) => void (await q.query('INSERT INTO a (x) VALUES (9007199254740991)')),
  'ALTER TABLE a ADD COLUMN y INTEGER',
];
const LOCK = 0x7465737431;

describe.skipIf(!given)('@latchkey/storage/postgres', () => {
  let pool: PgPool;
  beforeAll(async () => {
    pool = openPool({ url: await newDatabase(), max: 6 });
  });
  afterAll(async () => {
    await pool?.end();
  });

  it('migrates once when several start together, then refuses a newer schema', async () => {
    const opts = { lock: LOCK, versionTable: 'test_schema', steps: STEPS, what: 'test db' };
    const runs = await Promise.all([1, 2, 3].map(() => migratePostgres(pool, opts)));
    expect(runs.map((r) => r.to)).toEqual([3, 3, 3]);
    expect(runs.filter((r) => r.from === 0)).toHaveLength(1);
    // BIGINT reads as a number
    expect((await pool.query('SELECT x, y FROM a')).rows).toEqual([
      { x: Number.MAX_SAFE_INTEGER, y: null },
    ]);
    await pool.query('UPDATE test_schema SET version = 7');
    const err = await migratePostgres(pool, { ...opts, code: 'KEY_UNAVAILABLE' }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SchemaTooNewError);
    expect(LatchkeyError.is(err, 'KEY_UNAVAILABLE')).toBe(true);
    expect((err as SchemaTooNewError).found).toBe(7);
    expect((await pool.query('SELECT version FROM test_schema')).rows).toEqual([{ version: 7 }]);
    // the lock was released: another session takes it at once
    const c = await pool.connect();
    expect((await c.query('SELECT pg_try_advisory_lock($1) AS ok', [LOCK])).rows[0]).toEqual({
      ok: true,
    });
    await c.query('SELECT pg_advisory_unlock($1)', [LOCK]);
    c.release();
  });

  it('runs the check under the lock before creating anything, and rolls a failing step back', async () => {
    const p = openPool({ url: await newDatabase(), max: 2 });
    try {
      const refused = migratePostgres(p, {
        lock: LOCK,
        versionTable: 'v',
        steps: STEPS,
        what: 'x',
        check: () => Promise.reject(new Error('not ours')),
      });
      await expect(refused).rejects.toThrow('not ours');
      expect((await p.query("SELECT to_regclass('v')::text AS t")).rows).toEqual([{ t: null }]);
      await expect(
        migratePostgres(p, {
          lock: LOCK,
          versionTable: 'v',
          steps: [...STEPS, 'CREATE TABLE b (x INT); SELECT nope FROM nowhere'],
          what: 'x',
        }),
      ).rejects.toMatchObject({ code: '42P01' });
      expect((await p.query('SELECT version FROM v')).rows).toEqual([{ version: 3 }]);
      expect((await p.query("SELECT to_regclass('b')::text AS t")).rows).toEqual([{ t: null }]);
    } finally {
      await p.end();
    }
  });

  it('transaction commits, rolls back on a throw, and reruns on a serialisation failure', async () => {
    await pool.query('CREATE TABLE t (id INT PRIMARY KEY, n INT NOT NULL)');
    await transaction(pool, (q) => q.query('INSERT INTO t VALUES (1, 0)'));
    await expect(
      transaction(pool, async (q) => {
        await q.query('UPDATE t SET n = 100');
        throw new Error('no');
      }),
    ).rejects.toThrow('no');
    expect((await pool.query('SELECT n FROM t')).rows).toEqual([{ n: 0 }]);

    // Two SERIALIZABLE read-modify-writes at once: one fails with 40001 and is rerun.
    let entered = 0;
    let bothIn: () => void = () => undefined;
    const together = new Promise<void>((r) => (bothIn = r));
    let attempts = 0;
    const bump = (): Promise<void> =>
      transaction(pool, async (q) => {
        attempts++;
        await q.query('SET TRANSACTION ISOLATION LEVEL SERIALIZABLE');
        const n = (await q.query<{ n: number }>('SELECT n FROM t WHERE id = 1')).rows[0]?.n ?? 0;
        if (++entered === 2) bothIn();
        await together;
        await q.query('UPDATE t SET n = $1 WHERE id = 1', [n + 1]);
      });
    await Promise.all([bump(), bump()]);
    expect((await pool.query('SELECT n FROM t')).rows).toEqual([{ n: 2 }]);
    expect(attempts).toBe(3);
  });

  it('gives up after the attempts and reports the last failure as is', async () => {
    let attempts = 0;
    const err = await transaction(
      pool,
      () => {
        attempts++;
        return pool.query("DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '40P01'; END $$");
      },
      { attempts: 3 },
    ).catch((e: unknown) => e);
    expect(attempts).toBe(3);
    expect((err as { code?: string }).code).toBe('40P01');
  });

  it('discards a connection whose transaction broke instead of pooling it', async () => {
    const p = openPool({ url: await newDatabase(), max: 1 });
    try {
      const pid = async (): Promise<number> =>
        transaction(
          p,
          async (q) =>
            (await q.query<{ p: number }>('SELECT pg_backend_pid() AS p')).rows[0]?.p ?? 0,
        );
      const first = await pid();
      expect(await pid()).toBe(first);
      await expect(
        transaction(p, async (q) => {
          await q.query('SELECT pg_terminate_backend(pg_backend_pid())');
        }),
      ).rejects.toThrow();
      const after = await pid();
      expect(after).not.toBe(first);
    } finally {
      await p.end();
    }
  });
});
