/**
 * A PostgreSQL server for the key store tests: LATCHKEY_TEST_PG_URL when set (`.ci/run` exports
 * it), else a throwaway server on loopback when the Debian binaries are installed. When neither
 * is possible the tests skip with the reason printed, except under CI=true where that fails.
 * (packages/relay/test/_services.ts does the same and also needs Redis; the keys need only this.)
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export interface TestPostgres {
  /** A fresh database on the server, created here. */
  newDatabase(): Promise<string>;
  /**
   * Data files that can hold rows of the database at `url` (its directory and the WAL), after
   * a checkpoint; empty when the server is not ours (LATCHKEY_TEST_PG_URL).
   */
  dataFiles(url: string): Promise<string[]>;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

function pgBin(): string | undefined {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return undefined;
  const versions = readdirSync(base)
    .filter((v) => existsSync(join(base, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? undefined : join(base, versions[0], 'bin');
}

/** Runs a PostgreSQL binary as the `postgres` user when we are root (initdb refuses root). */
function asPostgres(cmd: string, args: string[]): string[] {
  return process.getuid?.() === 0
    ? ['runuser', '-u', 'postgres', '--', cmd, ...args]
    : [cmd, ...args];
}

function run(argv: string[]): void {
  const [cmd, ...args] = argv;
  const r = spawnSync(cmd as string, args, { encoding: 'utf8' });
  if (r.status !== 0)
    throw new Error(`${argv.slice(0, 5).join(' ')} failed: ${r.stderr || r.stdout}`);
}

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((f) => join(dir, f))
    .filter((f) => statSync(f).isFile());
}

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/**
 * The server for a test file, or null (reason printed) when unavailable outside CI.
 * @throws Error under CI=true when no PostgreSQL is available.
 */
export async function testPostgres(what: string): Promise<TestPostgres | null> {
  const bin = pgBin();
  const given = process.env.LATCHKEY_TEST_PG_URL;
  if (!given && !bin) {
    const reason = `${what}: needs PostgreSQL (set LATCHKEY_TEST_PG_URL or install postgresql)`;
    if (process.env.CI === 'true') throw new Error(reason);
    console.warn(`skipping ${reason}`);
    return null;
  }
  let url: string;
  let data: string | undefined;
  let stop = async (): Promise<void> => undefined;
  if (given) {
    url = given;
  } else {
    const dir = await mkdtemp(join(tmpdir(), 'latchkey-keys-pg-'));
    await chmod(dir, 0o777);
    data = join(dir, 'data');
    if (process.getuid?.() === 0) run(['chown', 'postgres', dir]);
    run(
      asPostgres(join(bin as string, 'initdb'), [
        '-D',
        data,
        '-A',
        'trust',
        '-U',
        'postgres',
        '--no-sync',
        '-E',
        'UTF8',
      ]),
    );
    const port = await freePort();
    const opts = `-k ${dir} -p ${port} -h 127.0.0.1 -F -c max_connections=100`;
    run(
      asPostgres(join(bin as string, 'pg_ctl'), [
        '-D',
        data,
        '-w',
        '-t',
        '30',
        '-l',
        join(dir, 'log'),
        '-o',
        opts,
        'start',
      ]),
    );
    url = `postgres://postgres@127.0.0.1:${port}/postgres`;
    const dataDir = data;
    stop = async () => {
      const [cmd, ...args] = asPostgres(join(bin as string, 'pg_ctl'), [
        '-D',
        dataDir,
        '-m',
        'immediate',
        'stop',
      ]);
      spawnSync(cmd as string, args);
      await rm(dir, { recursive: true, force: true });
    };
  }
  return {
    async newDatabase() {
      const name = `lk_keys_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
      await withClient(url, (c) => c.query(`CREATE DATABASE ${name}`));
      const u = new URL(url);
      u.pathname = `/${name}`;
      return u.toString();
    },
    async dataFiles(dbUrl) {
      if (data === undefined) return [];
      const oid = await withClient(dbUrl, async (c) => {
        await c.query('CHECKPOINT');
        return (
          await c.query<{ oid: string }>(
            'SELECT oid::text FROM pg_database WHERE datname = current_database()',
          )
        ).rows[0]?.oid;
      });
      return [...filesUnder(join(data, 'base', String(oid))), ...filesUnder(join(data, 'pg_wal'))];
    },
    stop,
  };
}
