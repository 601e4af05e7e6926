/**
 * What the PostgreSQL backends of one database are doing during a measurement window of the
 * cluster benchmark: `pg_stat_activity` sampled every 250 ms by one `psql` process (`\watch`),
 * each client backend counted by state and wait event (PostgreSQL "Wait Event Types"):
 * `active:cpu` runs, `active:Lock:advisory` waits for an advisory lock (the key access log's
 * chain lock, a contact's lock), `active:Lock:transactionid` for a row lock held by another
 * transaction, `active:LWLock:WALWrite` / `active:IO:WALSync` for the WAL flush of a commit,
 * `idle in transaction:Client:ClientRead` for its client (the relay or key service) to send the
 * next statement, `idle:Client:ClientRead` is a pooled connection with nothing to do.
 */
import { spawn, type ChildProcess } from 'node:child_process';

export interface PgWaits {
  /** Backend samples counted, over all snapshots. */
  samples: number;
  /** `state:wait_event_type:wait_event` → share of the samples (0–1), largest first. */
  share: Record<string, number>;
}

/** Starts sampling the backends connected to `dbUrl`'s database; `stop` returns the counts. */
export function sampleWaits(dbUrl: string): { stop(): Promise<PgWaits> } {
  const db = new URL(dbUrl).pathname.slice(1);
  const admin = new URL(dbUrl);
  admin.pathname = '/postgres';
  const sql =
    "SELECT state || ':' || coalesce(wait_event_type || ':' || wait_event, 'cpu') " +
    `FROM pg_stat_activity WHERE datname = '${db}' AND backend_type = 'client backend' ` +
    'AND pid <> pg_backend_pid() \\watch 0.25\n';
  const child: ChildProcess = spawn('psql', [admin.toString(), '-At', '-q'], {
    stdio: ['pipe', 'pipe', 'ignore'],
  });
  const counts = new Map<string, number>();
  let rest = '';
  child.stdout?.on('data', (d: Buffer) => {
    const lines = (rest + d.toString('utf8')).split('\n');
    rest = lines.pop() ?? '';
    for (const l of lines) if (l !== '') counts.set(l, (counts.get(l) ?? 0) + 1);
  });
  child.stdin?.write(sql);
  return {
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      let samples = 0;
      for (const n of counts.values()) samples += n;
      const share: Record<string, number> = {};
      for (const [k, n] of [...counts].sort((a, b) => b[1] - a[1]))
        share[k] = Math.round((n / samples) * 1000) / 1000;
      return { samples, share };
    },
  };
}
