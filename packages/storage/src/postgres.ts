/**
 * PostgreSQL, the way every Latchkey store uses it (`pg`): a pool whose BIGINT columns read as
 * numbers, transactions retried on serialisation failure and deadlock with a broken connection
 * discarded rather than returned to the pool, and migrations under an advisory lock so that
 * services starting together migrate once. Only this entry imports `pg`.
 */
import pg from 'pg';
import { SchemaTooNewError, type StoreErrorCode } from './errors.ts';
import { runAsync, type Flow } from './flow.ts';
import type { Sql, SqlValue } from './sql.ts';

export type PgPool = pg.Pool;
export type PgClient = pg.PoolClient;

/** SQLSTATEs worth retrying the whole transaction for: serialisation failure, deadlock. */
const RETRY_CODES = new Set(['40001', '40P01']);
/** Attempts of one transaction before its serialisation failure reaches the caller. */
export const TRANSACTION_ATTEMPTS = 4;

/** BIGINT columns come back as numbers: every value we store (ms times, seqs) is a safe integer. */
const TYPES = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === 20
      ? (v: string) => Number(v)
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

export interface OpenPoolOptions {
  /** `postgres://user:pass@host:port/db`. */
  url: string;
  /** Connections in the pool. */
  max: number;
  /** How long getting a connection may take (ms, default 10 s). */
  connectionTimeoutMs?: number;
}

/** A pool whose idle clients' network errors do not crash the process (the next query reports). */
export function openPool(opts: OpenPoolOptions): PgPool {
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.max,
    connectionTimeoutMillis: opts.connectionTimeoutMs ?? 10_000,
    types: TYPES,
  });
  pool.on('error', () => undefined);
  return pool;
}

/** True for a `pg` error reported by the server (it has a SQLSTATE). */
export function isPgDatabaseError(err: unknown): err is pg.DatabaseError {
  return err instanceof pg.DatabaseError;
}

/**
 * Runs `fn` on a connection of the pool, then returns it to the pool, or ends it when `fn`
 * called `discard` or the connection failed meanwhile.
 */
async function withClient<T>(
  pool: PgPool,
  fn: (client: PgClient, discard: () => void) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  const discard = (): void => {
    broken = true;
  };
  // A connection lost while checked out emits 'error' on its client: without a listener that
  // would crash the process. The failed query reports it; the client is discarded.
  client.on('error', discard);
  try {
    return await fn(client, discard);
  } finally {
    client.off('error', discard);
    client.release(broken);
  }
}

/** BEGIN, `fn`, COMMIT; ROLLBACK when anything throws (a failed ROLLBACK discards the client). */
async function inTransaction<T>(
  client: PgClient,
  discard: () => void,
  fn: (q: PgClient) => Promise<T>,
): Promise<T> {
  try {
    await client.query('BEGIN');
    const out = await fn(client);
    await client.query('COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch(discard);
    throw err;
  }
}

/**
 * Runs `fn` in one transaction on a pooled connection. A serialisation failure or deadlock
 * (40001, 40P01) reruns it whole, up to `attempts` times in all (default 4); a connection whose
 * ROLLBACK failed is discarded, not returned to the pool.
 * @throws whatever `fn`, the connection or the commit threw, as is (each store words its own
 *   failure).
 */
export async function transaction<T>(
  pool: PgPool,
  fn: (q: PgClient) => Promise<T>,
  opts: { attempts?: number } = {},
): Promise<T> {
  const attempts = opts.attempts ?? TRANSACTION_ATTEMPTS;
  for (let attempt = 1; ; attempt++) {
    try {
      return await withClient(pool, (client, discard) => inTransaction(client, discard, fn));
    } catch (err) {
      if (isPgDatabaseError(err) && RETRY_CODES.has(err.code ?? '') && attempt < attempts) continue;
      throw err;
    }
  }
}

/** One schema step: SQL to run, or a function for what SQL alone cannot do. */
export type PgStep = string | ((q: PgClient) => Promise<void>);

export interface MigratePostgresOptions {
  /** Advisory lock key, one per schema (distinct between stores sharing a server). */
  lock: number;
  /** Table holding the one row with the version (created when missing); an identifier. */
  versionTable: string;
  /** Step `i` migrates version `i` to `i + 1`. */
  steps: readonly PgStep[];
  /** Names the database for the operator in a SchemaTooNewError. */
  what: string;
  /** Wire code of the SchemaTooNewError (default `UNAVAILABLE`). */
  code?: StoreErrorCode;
  /** Runs under the lock before anything is created (e.g. refusing someone else's database). */
  check?: (q: PgClient) => Promise<void>;
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Brings the schema up to `steps.length` under an advisory lock, one transaction per step, so
 * that services starting together migrate once (the others wait and find it done).
 * @returns the version found and the version now.
 * @throws SchemaTooNewError when the database's version is newer than `steps.length` (nothing
 *   is changed); a failing step's or the connection's error as is (that step is rolled back).
 */
export async function migratePostgres(
  pool: PgPool,
  opts: MigratePostgresOptions,
): Promise<{ from: number; to: number }> {
  if (!IDENT.test(opts.versionTable)) throw new TypeError('versionTable must be an identifier');
  const table = opts.versionTable;
  const known = opts.steps.length;
  // A session still holding the lock is never pooled: ending it releases the lock.
  return withClient(pool, async (client, discard) => {
    await client.query('SELECT pg_advisory_lock($1)', [opts.lock]);
    try {
      await opts.check?.(client);
      await client.query(`CREATE TABLE IF NOT EXISTS ${table} (version INTEGER NOT NULL)`);
      const r = await client.query<{ version: number }>(`SELECT version FROM ${table}`);
      if (r.rows.length === 0) await client.query(`INSERT INTO ${table} (version) VALUES (0)`);
      const from = SchemaTooNewError.check(
        opts.what,
        r.rows[0]?.version ?? 0,
        known,
        opts.code === undefined ? {} : { code: opts.code },
      );
      for (let v = from; v < known; v++) {
        const step = opts.steps[v];
        await inTransaction(client, discard, async (q) => {
          if (typeof step === 'string') await q.query(step);
          else await step?.(q);
          await q.query(`UPDATE ${table} SET version = $1`, [v + 1]);
        });
      }
      return { from, to: known };
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [opts.lock]).catch(discard);
    }
  });
}

const NUMBERED = new Map<string, string>();

/** `?` placeholders as `$1, $2, ...` (our SQL has no `?` in literals). */
function numbered(text: string): string {
  let out = NUMBERED.get(text);
  if (out === undefined) {
    let n = 0;
    out = text.replace(/\?/g, () => `$${++n}`);
    if (NUMBERED.size < 1000) NUMBERED.set(text, out);
  }
  return out;
}

/** The `Sql` of a pooled connection inside a transaction. */
export function pgSql(q: PgClient): Sql {
  return {
    dialect: 'postgres',
    all: async <R>(text: string, args: readonly SqlValue[]) =>
      (await q.query(numbered(text), [...args])).rows as R[],
    run: async (text: string, args: readonly SqlValue[]) =>
      (await q.query(numbered(text), [...args])).rowCount ?? 0,
  };
}

/**
 * Runs a flow (flow.ts) in one `transaction` (retried on serialisation failure and deadlock).
 * @throws whatever the flow, the connection or the commit threw, as is.
 */
export function runPostgres<T>(pool: PgPool, flow: (sql: Sql) => Flow<T>): Promise<T> {
  return transaction(pool, (q) => runAsync(flow(pgSql(q))));
}
