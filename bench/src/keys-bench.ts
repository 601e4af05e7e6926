/**
 * The key service under a join burst (issue 16, "The key service"): `participants` members of
 * 1:1 contacts (a visitor and an agent each) all ask the key service for their contact's key and
 * their sender certificate at the same moment, as @latchkey/client does when it joins. The key
 * service (servers/keyd.ts) and the load generator (load/keys-worker.ts) are child processes of
 * their own, on 127.0.0.1, like the relay benchmark's.
 *
 * The first burst is cold: no contact exists yet, so each contact is created (membership row,
 * content key made, wrapped and stored) by whichever of its two members comes first, racing the
 * other. The later bursts are warm: the same contacts, new client sessions (new signing and
 * delivery keys, new connections), as when everyone rejoins after an outage.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Child, type ProcStats } from './ipc.ts';
import type { BurstResult, KeysSetupParams } from './load/keys-worker.ts';

export interface KeysBurst extends BurstResult {
  /** Key service CPU over the burst, in % of one core. */
  cpuPercent: number;
  /** Key service RSS after the burst. */
  rssBytes: number;
}

export interface KeysResult {
  participants: number;
  contacts: number;
  /** The first burst: every contact created by its first request. */
  cold: KeysBurst;
  /** Repeated bursts over the same contacts. */
  warm: KeysBurst[];
  /** Medians of the warm bursts (`keys_fetch_per_s`, `keys_p99_ms` of the summary). */
  warmFetchesPerSecond: number;
  warmP50Ms: number;
  warmP99Ms: number;
  /** Errors of every burst, cold and warm (must be 0). */
  errors: number;
}

export interface KeysBenchOptions {
  participants: number;
  /** Warm bursts after the cold one (default 2). */
  warmRepeats?: number;
  /** Open the sealed keys of every n-th contact (default 10; 1: all). */
  openEvery?: number;
  /** `node --cpu-prof` the key service into this directory (default: BENCH_CPU_PROF). */
  cpuProfDir?: string;
}

const src = (m: string): string => fileURLToPath(new URL(m, import.meta.url));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return 0;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

/**
 * Runs one cold and `warmRepeats` warm join bursts of `participants` (rounded down to an even
 * number) against a fresh key service.
 * @throws Error when a child process fails.
 */
export async function keysBench(opts: KeysBenchOptions): Promise<KeysResult> {
  const contacts = Math.floor(opts.participants / 2);
  const secretHex = randomBytes(32).toString('hex');
  const prof = opts.cpuProfDir ?? process.env['BENCH_CPU_PROF'];
  const execArgv = prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : [];
  const server = new Child('keyd', src('servers/keyd.ts'), { secretHex }, execArgv);
  let gen: Child | undefined;
  try {
    const { port } = (await server.hello) as { port: number };
    gen = new Child('keys-loadgen', src('load/keys-worker.ts'), {
      url: `http://127.0.0.1:${port}`,
      secretHex,
    });
    await gen.hello;
    const load = gen;
    await load.call('setup', {
      contacts,
      ...(opts.openEvery === undefined ? {} : { openEvery: opts.openEvery }),
    } satisfies KeysSetupParams);
    const once = async (): Promise<KeysBurst> => {
      const a = await server.call<ProcStats>('stats');
      const r = await load.call<BurstResult>('burst');
      const b = await server.call<ProcStats>('stats');
      const cpu = b.cpuUser + b.cpuSystem - (a.cpuUser + a.cpuSystem);
      // Over the burst itself: the stats calls around it are not the service's work.
      const cpuPercent = Math.round((cpu / 1000 / r.durationMs) * 1000) / 10;
      return { ...r, cpuPercent, rssBytes: b.rss };
    };
    const cold = await once();
    const warm: KeysBurst[] = [];
    for (let i = 0; i < (opts.warmRepeats ?? 2); i++) {
      // Let the previous burst's connections close and the loop go idle.
      await sleep(300);
      warm.push(await once());
    }
    return {
      participants: contacts * 2,
      contacts,
      cold,
      warm,
      warmFetchesPerSecond: median(warm.map((w) => w.fetchesPerSecond)),
      warmP50Ms: median(warm.map((w) => w.latency.p50)),
      warmP99Ms: median(warm.map((w) => w.latency.p99)),
      errors: cold.errors + warm.reduce((n, w) => n + w.errors, 0),
    };
  } finally {
    await gen?.stop();
    await server.stop();
  }
}
