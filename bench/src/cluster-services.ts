/**
 * PostgreSQL and Redis for the cluster benchmark (cluster-bench.ts): BENCH_PG_URL and
 * BENCH_REDIS_URL when set, else throwaway servers on loopback started from the Debian binaries
 * (/usr/lib/postgresql/<v>/bin, redis-server), as packages/relay/test/_services.ts starts them
 * for the tests. Unlike the tests' PostgreSQL, this one keeps fsync and synchronous_commit at
 * their defaults: a benchmark of the cluster measures the durability an operator runs with
 * (BENCH_PG_OPTIONS adds server options, e.g. `-c synchronous_commit=off`, for comparison).
 * Each scenario gets a fresh database (created and dropped with psql); a throwaway server is
 * stopped and its directory removed at the end. Their process ids are known, so their CPU can
 * be sampled (cluster-cpu.ts).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface ClusterServices {
  pgUrl: string;
  redisUrl: string;
  /** The postmaster's pid (its children are the backends), when started here. */
  pgPid: number | undefined;
  redisPid: number | undefined;
  /** Creates an empty database on the server and returns its URL. */
  newDatabase(prefix: string): string;
  /** Drops a database made by newDatabase (connections to it must be closed). */
  dropDatabase(url: string): void;
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

/** initdb and pg_ctl refuse root: run them as `postgres` then. */
function asPostgres(cmd: string, args: string[]): string[] {
  return process.getuid?.() === 0
    ? ['runuser', '-u', 'postgres', '--', cmd, ...args]
    : [cmd, ...args];
}

function run(argv: string[]): string {
  const [cmd, ...args] = argv;
  const r = spawnSync(cmd as string, args, { encoding: 'utf8' });
  if (r.status !== 0)
    throw new Error(`${argv.slice(0, 6).join(' ')} failed: ${r.stderr || r.stdout}`);
  return r.stdout;
}

interface Started {
  url: string;
  pid: number | undefined;
  stop(): Promise<void>;
}

async function startPostgres(bin: string): Promise<Started> {
  const dir = await mkdtemp(join(tmpdir(), 'latchkey-bench-pg-'));
  await chmod(dir, 0o777);
  const data = join(dir, 'data');
  if (process.getuid?.() === 0) run(['chown', 'postgres', dir]);
  run(asPostgres(join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8']));
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
      `-k ${dir} -p ${port} -h 127.0.0.1 -c max_connections=300 ${process.env['BENCH_PG_OPTIONS'] ?? ''}`,
      'start',
    ]),
  );
  const pid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    pid: Number.isFinite(pid) ? pid : undefined,
    async stop() {
      const [cmd, ...args] = asPostgres(join(bin, 'pg_ctl'), ['-D', data, '-m', 'fast', 'stop']);
      spawnSync(cmd as string, args);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function startRedis(): Promise<Started> {
  const port = await freePort();
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: ['ignore', 'pipe', 'ignore'] },
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
    pid: child.pid,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

function psql(url: string, sql: string): void {
  run(['psql', url, '-v', 'ON_ERROR_STOP=1', '-q', '-c', sql]);
}

/**
 * PostgreSQL and Redis for the cluster benchmark.
 * @throws Error when neither the environment nor the local binaries provide one of them.
 */
export async function clusterServices(): Promise<ClusterServices> {
  const envPg = process.env['BENCH_PG_URL'];
  const envRedis = process.env['BENCH_REDIS_URL'];
  const bin = pgBin();
  if (!envPg && !bin)
    throw new Error('cluster bench: needs BENCH_PG_URL or PostgreSQL in /usr/lib/postgresql');
  if (!envRedis && spawnSync('sh', ['-c', 'command -v redis-server']).status !== 0)
    throw new Error('cluster bench: needs BENCH_REDIS_URL or redis-server');
  const pg: Started = envPg
    ? { url: envPg, pid: undefined, stop: () => Promise.resolve() }
    : await startPostgres(bin as string);
  let redis: Started;
  try {
    redis = envRedis
      ? { url: envRedis, pid: undefined, stop: () => Promise.resolve() }
      : await startRedis();
  } catch (err) {
    await pg.stop();
    throw err;
  }
  const made = new Set<string>();
  const dbUrl = (name: string): string => {
    const u = new URL(pg.url);
    u.pathname = `/${name}`;
    return u.toString();
  };
  return {
    pgUrl: pg.url,
    redisUrl: redis.url,
    pgPid: pg.pid,
    redisPid: redis.pid,
    newDatabase(prefix) {
      const name = `${prefix}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
      psql(pg.url, `CREATE DATABASE ${name}`);
      made.add(name);
      return dbUrl(name);
    },
    dropDatabase(url) {
      const name = new URL(url).pathname.slice(1);
      if (!made.has(name)) return;
      psql(pg.url, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      made.delete(name);
    },
    async stop() {
      for (const name of made) {
        try {
          psql(pg.url, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        } catch {
          // the server is going away anyway when it is ours
        }
      }
      made.clear();
      await Promise.allSettled([pg.stop(), redis.stop()]);
    },
  };
}
