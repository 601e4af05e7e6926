/**
 * Test services: a PostgreSQL and a Redis server for the scale-out tests. Taken from
 * LATCHKEY_TEST_PG_URL / LATCHKEY_TEST_REDIS_URL when set (`.ci/run` exports them), else started
 * as throwaway instances on loopback when the Debian binaries are installed (nothing to set up
 * on a developer machine). When neither is possible the tests skip with the reason printed,
 * except under CI=true where a missing service is a failure.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

export interface Service {
  url: string;
  stop(): Promise<void>;
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

/** A fresh PostgreSQL server in a temporary directory (fsync off: tests only). */
async function startPostgres(bin: string): Promise<Service> {
  const dir = await mkdtemp(join(tmpdir(), 'latchkey-pg-'));
  await chmod(dir, 0o777);
  const data = join(dir, 'data');
  if (process.getuid?.() === 0) run(['chown', 'postgres', dir]);
  run(
    asPostgres(join(bin, 'initdb'), [
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
  run(
    asPostgres(join(bin, 'pg_ctl'), [
      '-D',
      data,
      '-w',
      '-t',
      '30',
      '-l',
      join(dir, 'log'),
      '-o',
      `-k ${dir} -p ${port} -h 127.0.0.1 -F -c max_connections=200`,
      'start',
    ]),
  );
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async stop() {
      const [cmd, ...args] = asPostgres(join(bin, 'pg_ctl'), [
        '-D',
        data,
        '-m',
        'immediate',
        'stop',
      ]);
      spawnSync(cmd as string, args);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A fresh Redis server without persistence. */
async function startRedis(): Promise<Service> {
  const port = await freePort();
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    {
      stdio: ['ignore', 'pipe', 'ignore'],
    },
  );
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('redis-server did not start')), 10_000);
    child.stdout?.on('data', (d: Buffer) => {
      if (d.toString().includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`redis-server exited with ${code}`)));
  });
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    },
  };
}

export interface Services {
  /** A database of its own for this test file (created here). */
  pgUrl: string;
  redisUrl: string;
  /** Another fresh database on the same server. */
  newDatabase(): Promise<string>;
  stop(): Promise<void>;
}

function hasCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/**
 * PostgreSQL and Redis for a test file, or null (reason printed) when unavailable outside CI.
 * @throws Error under CI=true when a service is missing.
 */
export async function testServices(what: string): Promise<Services | null> {
  const bin = pgBin();
  const missing: string[] = [];
  if (!process.env.LATCHKEY_TEST_PG_URL && !bin)
    missing.push('PostgreSQL (set LATCHKEY_TEST_PG_URL or install postgresql)');
  if (!process.env.LATCHKEY_TEST_REDIS_URL && !hasCommand('redis-server')) {
    missing.push('Redis (set LATCHKEY_TEST_REDIS_URL or install redis-server)');
  }
  if (missing.length > 0) {
    const reason = `${what}: needs ${missing.join(' and ')}`;
    if (process.env.CI === 'true') throw new Error(reason);
    console.warn(`skipping ${reason}`);
    return null;
  }
  const pgServer = process.env.LATCHKEY_TEST_PG_URL
    ? { url: process.env.LATCHKEY_TEST_PG_URL, stop: () => Promise.resolve() }
    : await startPostgres(bin as string);
  const redis = process.env.LATCHKEY_TEST_REDIS_URL
    ? { url: process.env.LATCHKEY_TEST_REDIS_URL, stop: () => Promise.resolve() }
    : await startRedis();
  const newDatabase = async (): Promise<string> => {
    const name = `lk_test_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
    const admin = new pg.Client({ connectionString: pgServer.url });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${name}`);
    } finally {
      await admin.end();
    }
    const u = new URL(pgServer.url);
    u.pathname = `/${name}`;
    return u.toString();
  };
  return {
    pgUrl: await newDatabase(),
    redisUrl: redis.url,
    newDatabase,
    async stop() {
      await Promise.allSettled([pgServer.stop(), redis.stop()]);
    },
  };
}
