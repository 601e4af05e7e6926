/**
 * The one way store logic written once (flow.ts) speaks to a database: SQL text with `?`
 * placeholders, the same for SQLite and PostgreSQL (the PostgreSQL driver numbers them), run by
 * the driver of the transaction the flow runs in (`sqliteSql` in sqlite.ts, `pgSql` in
 * postgres.ts).
 */
import { wait, type Awaitable, type Flow } from './flow.ts';

export type SqlValue = string | number | null;

/** One transaction's queries. */
export interface Sql {
  /** `postgres` takes row locks (`FOR UPDATE`); `sqlite` holds the whole file's write lock. */
  readonly dialect: 'sqlite' | 'postgres';
  /** The rows a query returns. */
  all<R>(sql: string, args: readonly SqlValue[]): Awaitable<R[]>;
  /** Runs a statement; the number of rows it changed. */
  run(sql: string, args: readonly SqlValue[]): Awaitable<number>;
}

/** The rows of a query (in a flow). */
export function* rows<R>(sql: Sql, text: string, args: readonly SqlValue[]): Flow<R[]> {
  return yield* wait(sql.all<R>(text, args));
}

/** The first row of a query, if any (in a flow). */
export function* row<R>(sql: Sql, text: string, args: readonly SqlValue[]): Flow<R | undefined> {
  return (yield* wait(sql.all<R>(text, args)))[0];
}

/** Runs a statement (in a flow); the number of rows it changed. */
export function* exec(sql: Sql, text: string, args: readonly SqlValue[]): Flow<number> {
  return yield* wait(sql.run(text, args));
}

/** ` FOR UPDATE` on PostgreSQL (a row lock for the transaction), nothing on SQLite. */
export function forUpdate(sql: Sql, lock: boolean): string {
  return lock && sql.dialect === 'postgres' ? ' FOR UPDATE' : '';
}
