/**
 * The cluster benchmark (issue 17 "Measure"): the key service and the relay on PostgreSQL (and
 * Redis), one process against several, with their SQLite single-process counterparts as anchors,
 * on the same machine in the same run:
 *  - keys: the join burst of keys-bench (`participants` members of 1:1 contacts ask for their
 *    contact key and certificate at the same moment, each on a new connection), against one
 *    key service on SQLite (keysBench itself), one on PostgreSQL, and two on one PostgreSQL
 *    database; the PostgreSQL ones behind a round-robin TCP balancer (a child of its own) in
 *    both cases, so that one and two differ only by the second key service;
 *  - chat: the relay load generator's `window` phase (load/worker.ts, every connection keeps
 *    `window` messages in flight) against one relay on SQLite (servers/latchkey.ts, as in the
 *    main bench) and three relay processes on PostgreSQL + Redis, connection i on relay i % 3,
 *    so that the two members of each contact sit on different relays and every message crosses
 *    Redis.
 * Every process's CPU is sampled from /proc over each measurement window (cluster-cpu.ts):
 * relays, key services, balancer, PostgreSQL (postmaster and backends), Redis, load generator,
 * and the machine as a whole, to say which one saturates first. Every process shares the same
 * cores: on a small machine this measures what coordination through PostgreSQL and Redis costs,
 * not scale-out. PostgreSQL and Redis: cluster-services.ts. See docs/benchmarks.md "Cluster".
 *
 * Longer than 400 lines: one scenario runner per figure (keys on SQLite, on one and two
 * PostgreSQL key services, chat on one and three relays), sharing the sampling around each window.
 */
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Child, type ProcStats } from './ipc.ts';
import { cpuSnapshot, cpuUsage, type CpuGroup, type CpuUsage } from './cluster-cpu.ts';
import { relayCounters, relayWindow, type RelayWindow } from './cluster-relay-metrics.ts';
import { sampleWaits, type PgWaits } from './cluster-pg-waits.ts';
import { clusterServices, type ClusterServices } from './cluster-services.ts';
import { keysBench } from './keys-bench.ts';
import type { BurstResult, KeysSetupParams } from './load/keys-worker.ts';
import type { ConnectParams, RunParams, RunResult } from './load/worker.ts';

export interface ClusterBenchOptions {
  /** Shorter windows, one warm key burst (default false). */
  quick?: boolean;
  /** Key-service participants per burst (default 1,000). */
  participants?: number;
  /** Chat contacts, two connections each (default 500). */
  contacts?: number;
  /** Each scenario this many times; the summary takes medians (default 1). */
  repeats?: number;
  /** Only these scenarios (a development aid): `keys` and/or `chat` (default both). */
  only?: readonly ('keys' | 'chat')[];
  /** Progress lines (default: stderr). */
  progress?: (line: string) => void;
}

/** One key burst with the CPU of every process and each key service's event-loop delay p99. */
export type Burst = BurstResult & { cpu: CpuUsage; loopP99Ms: number[]; pgWaits: PgWaits };

export interface KeysScenario {
  name: string;
  keyServices: number;
  repeat: number;
  cold: Burst;
  warm: Burst[];
  fetchesPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

export interface ChatScenario {
  name: string;
  /** Both members of a contact on one relay. */
  affinity: boolean;
  relays: number;
  repeat: number;
  connections: number;
  connectMs: number;
  run: RunResult;
  cpu: CpuUsage;
  /** Each relay's event-loop delay p99 over the window (ms). */
  loopP99Ms: number[];
  /** Each relay's stores, commits and fan-out over the window (its /metrics). */
  relayMetrics: RelayWindow[];
  /** PostgreSQL backends over the window (three relays only). */
  pgWaits: PgWaits | undefined;
  errors: number;
}

export interface ClusterResult {
  loadAvgBefore: number[];
  loadAvgAfter: number[];
  participants: number;
  contacts: number;
  keysSqlite: { fetchesPerSecond: number; p99Ms: number; cpuPercent: number; errors: number }[];
  keys: KeysScenario[];
  chat: ChatScenario[];
  summary: ClusterSummary;
}

const src = (m: string): string => fileURLToPath(new URL(m, import.meta.url));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return 0;
  const mid = Math.floor(s.length / 2);
  const m = s.length % 2 === 1 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
  return Math.round(m * 10) / 10;
}
const round2 = (x: number): number => Math.round(x * 100) / 100;
const round1 = (x: number): number => Math.round(x * 10) / 10;

interface Proc {
  child: Child;
  port: number;
  pid: number;
}

async function startChild(name: string, module: string, config: unknown): Promise<Proc> {
  const child = new Child(name, src(module), config);
  const hello = (await child.hello) as { port: number; pid?: number };
  return { child, port: hello.port, pid: hello.pid ?? child.pid ?? 0 };
}

function groups(
  services: ClusterServices,
  parts: Record<string, number[]>,
  withBackends: boolean,
): CpuGroup[] {
  const out: CpuGroup[] = Object.entries(parts).map(([name, pids]) => ({ name, pids }));
  if (withBackends && services.pgPid !== undefined)
    out.push({ name: 'postgres', tree: services.pgPid });
  if (withBackends && services.redisPid !== undefined)
    out.push({ name: 'redis', pids: [services.redisPid] });
  return out;
}

/** `keyServices` key services on one fresh PostgreSQL database, behind the balancer. */
async function keysPg(
  services: ClusterServices,
  keyServices: number,
  repeat: number,
  o: Required<ClusterBenchOptions>,
): Promise<KeysScenario> {
  const name = `keys_pg${keyServices}`;
  const db = services.newDatabase(`bench_${name}`);
  const secretHex = randomBytes(32).toString('hex');
  const masterHex = randomBytes(32).toString('hex');
  const procs: Proc[] = [];
  try {
    // One after the other: the first creates the schema and the shared signing key.
    for (let i = 0; i < keyServices; i++)
      procs.push(
        await startChild(`keyd-pg${i}`, 'servers/cluster-keyd.ts', {
          secretHex,
          masterHex,
          keyStoreUrl: db,
        }),
      );
    const lb = await startChild('balancer', 'servers/cluster-balancer.ts', {
      ports: procs.map((p) => p.port),
    });
    procs.push(lb);
    const gen = new Child('keys-loadgen', src('load/keys-worker.ts'), {
      url: `http://127.0.0.1:${lb.port}`,
      secretHex,
    });
    const genPid = ((await gen.hello) as { pid?: number }).pid ?? gen.pid ?? 0;
    procs.push({ child: gen, port: 0, pid: genPid });
    await gen.call('setup', {
      contacts: Math.floor(o.participants / 2),
    } satisfies KeysSetupParams);
    const cpuGroups = groups(
      services,
      {
        keyd: procs.slice(0, keyServices).map((p) => p.pid),
        balancer: [lb.pid],
        loadgen: [genPid],
      },
      true,
    );
    const keyds = procs.slice(0, keyServices);
    const once = async (): Promise<Burst> => {
      // The stats calls reset each key service's event-loop histogram.
      await Promise.all(keyds.map((p) => p.child.call<ProcStats>('stats')));
      const waits = sampleWaits(db);
      const a = cpuSnapshot(cpuGroups);
      const r = await gen.call<BurstResult>('burst');
      const b = cpuSnapshot(cpuGroups);
      const pgWaits = await waits.stop();
      const loops = await Promise.all(keyds.map((p) => p.child.call<ProcStats>('stats')));
      return { ...r, cpu: cpuUsage(a, b), loopP99Ms: loops.map((l) => l.loopP99Ms), pgWaits };
    };
    const cold = await once();
    const warm: Burst[] = [];
    for (let i = 0; i < (o.quick ? 1 : 2); i++) {
      await sleep(300);
      warm.push(await once());
    }
    const s: KeysScenario = {
      name,
      keyServices,
      repeat,
      cold,
      warm,
      fetchesPerSecond: median(warm.map((w) => w.fetchesPerSecond)),
      p50Ms: median(warm.map((w) => w.latency.p50)),
      p99Ms: median(warm.map((w) => w.latency.p99)),
      errors: cold.errors + warm.reduce((n, w) => n + w.errors, 0),
    };
    const w = warm[warm.length - 1] ?? cold;
    o.progress(
      `${name} #${repeat}: cold ${cold.fetchesPerSecond}/s p99 ${cold.latency.p99} ms; warm ${s.fetchesPerSecond}/s ` +
        `p50 ${s.p50Ms} p99 ${s.p99Ms} ms; errors ${s.errors} ${JSON.stringify({ ...cold.errorCodes, ...w.errorCodes })}; ` +
        `CPU % (last warm burst) ${fmtCpu(w.cpu)}; key service loop p99 ${w.loopP99Ms.join(', ')} ms; PostgreSQL backends ${fmtWaits(w.pgWaits)}`,
    );
    return s;
  } finally {
    for (const p of procs.reverse()) await p.child.stop();
    services.dropDatabase(db);
  }
}

function fmtWaits(w: PgWaits | undefined): string {
  if (!w) return '-';
  return Object.entries(w.share)
    .slice(0, 5)
    .map(([k, v]) => `${k} ${Math.round(v * 100)}%`)
    .join(', ');
}

function fmtCpu(c: CpuUsage): string {
  const parts = Object.entries(c.percent).map(
    ([k, v]) => `${k} ${v}${c.busiestPercent[k] !== v ? ` (busiest ${c.busiestPercent[k]})` : ''}`,
  );
  return `${parts.join(', ')}; machine ${c.machinePercent}% of all cores over ${c.seconds} s`;
}

/**
 * Chat throughput: one relay on SQLite, or `relays` relays on PostgreSQL + Redis with the two
 * members of each contact on different relays, or (`affinity`) on the same one, as a balancer
 * routing by contact would place them: no row of a contact is then written by two relays, and
 * nothing needs the fan-out to reach the peer.
 */
async function chat(
  services: ClusterServices,
  relays: number,
  repeat: number,
  o: Required<ClusterBenchOptions>,
  affinity = false,
): Promise<ChatScenario> {
  const pg = relays > 1;
  const name = pg ? `chat_${relays}relays_pg${affinity ? '_affinity' : ''}` : 'chat_1relay_sqlite';
  const db = pg ? services.newDatabase(`bench_chat`) : undefined;
  const secretHex = randomBytes(32).toString('hex');
  const procs: Proc[] = [];
  try {
    if (db === undefined)
      procs.push(await startChild('relay-sqlite', 'servers/latchkey.ts', { secretHex }));
    else
      // One after the other: the first migrates the schema.
      for (let i = 0; i < relays; i++)
        procs.push(
          await startChild(`relay-pg${i}`, 'servers/cluster-relay.ts', {
            secretHex,
            storeUrl: db,
            fanoutUrl: services.redisUrl,
          }),
        );
    const urls = procs.map((p) => `ws://127.0.0.1:${p.port}`);
    const gen = new Child(`loadgen(${name})`, src('load/worker.ts'), {
      kind: 'latchkey',
      url: urls[0],
      urls,
      spread: affinity ? 'contacts' : 'members',
      secretHex,
    });
    const genPid = ((await gen.hello) as { pid?: number }).pid ?? gen.pid ?? 0;
    const relayPids = procs.map((p) => p.pid);
    procs.push({ child: gen, port: 0, pid: genPid });
    const conn = await gen.call<{ connections: number; ms: number }>('connect', {
      contacts: o.contacts,
      size: 200,
      prefix: `${name}-r${repeat}`,
      templates: true,
    } satisfies ConnectParams);
    const cpuGroups = groups(services, { relay: relayPids, loadgen: [genPid] }, pg);
    const p: RunParams = {
      mode: 'window',
      window: 4,
      warmupMs: o.quick ? 600 : 2000,
      durationMs: o.quick ? 2000 : 6000,
      drainMs: 5000,
    };
    const relayProcs = procs.slice(0, relays);
    const running = gen.call<RunResult>('run', p);
    await sleep(p.warmupMs);
    await Promise.all(relayProcs.map((r) => r.child.call<ProcStats>('stats')));
    const m0 = await Promise.all(relayProcs.map((r) => relayCounters(r.port)));
    const waits = db === undefined ? undefined : sampleWaits(db);
    const a = cpuSnapshot(cpuGroups);
    await sleep(p.durationMs);
    const b = cpuSnapshot(cpuGroups);
    const pgWaits = await waits?.stop();
    const m1 = await Promise.all(relayProcs.map((r) => relayCounters(r.port)));
    const loops = await Promise.all(relayProcs.map((r) => r.child.call<ProcStats>('stats')));
    const run = await running;
    const s: ChatScenario = {
      name,
      affinity,
      relays,
      repeat,
      connections: conn.connections,
      connectMs: conn.ms,
      run,
      cpu: cpuUsage(a, b),
      loopP99Ms: loops.map((l) => l.loopP99Ms),
      relayMetrics: m1.map((m, i) => relayWindow(m0[i] as typeof m, m, p.durationMs / 1000)),
      pgWaits,
      errors: run.errors,
    };
    o.progress(
      `${name} #${repeat}: ${conn.connections} connections in ${conn.ms} ms; ${run.deliveredPerSecond} msg/s delivered ` +
        `(wire p50 ${run.wire.p50} p99 ${run.wire.p99} ms), errors ${run.errors} ${JSON.stringify(run.errorCodes)}; CPU % ${fmtCpu(s.cpu)}; relay loop p99 ${s.loopP99Ms.join(', ')} ms; relays ${s.relayMetrics.map((m) => `${m.storedPerSecond} stored/s in ${m.commitsPerSecond} commits/s of ${m.meanBatch} (${m.meanCommitMs} ms), ${m.gapRepairs} gap repairs, fan-out lag ${m.meanFanoutLagMs} ms`).join('; ')}; PostgreSQL backends ${fmtWaits(pgWaits)}`,
    );
    return s;
  } finally {
    for (const p of procs.reverse()) await p.child.stop();
    if (db !== undefined) services.dropDatabase(db);
  }
}

export type ClusterSummary = ReturnType<typeof summarizeCluster>;

/** The one-line JSON of the cluster bench (field names documented in docs/benchmarks.md). */
export function summarizeCluster(r: Omit<ClusterResult, 'summary'>) {
  const keys = (n: number): KeysScenario[] => r.keys.filter((k) => k.keyServices === n);
  const chatOf = (n: number, affinity = false): ChatScenario[] =>
    r.chat.filter((c) => c.relays === n && Boolean(c.affinity) === affinity);
  const pg1 = median(keys(1).map((k) => k.fetchesPerSecond));
  const pg2 = median(keys(2).map((k) => k.fetchesPerSecond));
  const one = median(chatOf(1).map((c) => c.run.deliveredPerSecond));
  const three = median(chatOf(3).map((c) => c.run.deliveredPerSecond));
  const lastWarm = (k: KeysScenario): Burst => k.warm[k.warm.length - 1] ?? k.cold;
  /** Per scenario: each component's CPU (% of one core), median over repeats. */
  const cpu: Record<string, Record<string, number>> = {};
  const busiest: Record<string, { process: string; percent: number }> = {};
  const add = (scenario: string, usages: CpuUsage[]): void => {
    const names = Object.keys(usages[0]?.percent ?? {});
    const row: Record<string, number> = {};
    for (const n of names) row[n] = round1(median(usages.map((u) => u.percent[n] ?? 0)));
    row['machine_of_all_cores'] = round1(median(usages.map((u) => u.machinePercent)));
    cpu[scenario] = row;
    // The single process nearest to a full core (a group's busiest member).
    let top = { process: '', percent: -1 };
    for (const n of names) {
      const v = round1(median(usages.map((u) => u.busiestPercent[n] ?? 0)));
      if (v > top.percent) top = { process: n, percent: v };
    }
    busiest[scenario] = top;
  };
  add(
    'keys_pg1',
    keys(1).map((k) => lastWarm(k).cpu),
  );
  add(
    'keys_pg2',
    keys(2).map((k) => lastWarm(k).cpu),
  );
  add(
    'chat_1relay_sqlite',
    chatOf(1).map((c) => c.cpu),
  );
  add(
    'chat_3relays_pg',
    chatOf(3).map((c) => c.cpu),
  );
  add(
    'chat_3relays_pg_affinity',
    chatOf(3, true).map((c) => c.cpu),
  );
  /** What PostgreSQL's backends were doing (first repeat, last warm burst): the top 4 shares. */
  const top = (w: PgWaits | undefined): Record<string, number> =>
    Object.fromEntries(Object.entries(w?.share ?? {}).slice(0, 4));
  const firstKeys = (n: number): KeysScenario | undefined => keys(n)[0];
  const pgWaits = {
    keys_pg1: top(firstKeys(1) && lastWarm(firstKeys(1) as KeysScenario).pgWaits),
    keys_pg2: top(firstKeys(2) && lastWarm(firstKeys(2) as KeysScenario).pgWaits),
    chat_3relays_pg: top(chatOf(3)[0]?.pgWaits),
    chat_3relays_pg_affinity: top(chatOf(3, true)[0]?.pgWaits),
  };
  const keysErrors =
    r.keysSqlite.reduce((n, k) => n + k.errors, 0) + r.keys.reduce((n, k) => n + k.errors, 0);
  const chatErrors = r.chat.reduce((n, c) => n + c.errors, 0);
  return {
    cluster_participants: r.participants,
    cluster_connections: r.contacts * 2,
    keys_sqlite_fetch_per_s: median(r.keysSqlite.map((k) => k.fetchesPerSecond)),
    keys_sqlite_p99_ms: median(r.keysSqlite.map((k) => k.p99Ms)),
    keys_pg1_fetch_per_s: pg1,
    keys_pg1_p99_ms: median(keys(1).map((k) => k.p99Ms)),
    keys_pg2_fetch_per_s: pg2,
    keys_pg2_p99_ms: median(keys(2).map((k) => k.p99Ms)),
    keys_pg2_vs_pg1: pg1 > 0 ? round2(pg2 / pg1) : null,
    keys_pg1_cold_fetch_per_s: median(keys(1).map((k) => k.cold.fetchesPerSecond)),
    keys_pg2_cold_fetch_per_s: median(keys(2).map((k) => k.cold.fetchesPerSecond)),
    chat_1relay_sqlite_msgs_per_s: one,
    chat_3relays_pg_msgs_per_s: three,
    chat_3relays_vs_1relay: one > 0 ? round2(three / one) : null,
    chat_3relays_pg_affinity_msgs_per_s: median(
      chatOf(3, true).map((c) => c.run.deliveredPerSecond),
    ),
    chat_3relays_pg_wire_p99_ms: median(chatOf(3).map((c) => c.run.wire.p99)),
    chat_1relay_sqlite_wire_p99_ms: median(chatOf(1).map((c) => c.run.wire.p99)),
    cluster_cpu_percent: cpu,
    cluster_busiest: busiest,
    cluster_pg_waits: pgWaits,
    cluster_keys_errors: keysErrors,
    cluster_chat_errors: chatErrors,
    cluster_errors: keysErrors + chatErrors,
    cluster_load_avg_before: r.loadAvgBefore,
    cluster_load_avg_after: r.loadAvgAfter,
  };
}

/**
 * Runs every scenario `repeats` times, interleaved (keys: sqlite, pg1, pg2; then the chats), and
 * stops the services it started.
 * @throws Error when PostgreSQL or Redis is unavailable or a child process fails.
 */
export async function clusterBench(opts: ClusterBenchOptions = {}): Promise<ClusterResult> {
  const o: Required<ClusterBenchOptions> = {
    quick: opts.quick ?? false,
    participants: opts.participants ?? 1000,
    contacts: opts.contacts ?? 500,
    repeats: opts.repeats ?? 1,
    only: opts.only ?? ['keys', 'chat'],
    progress: opts.progress ?? ((l) => void process.stderr.write(`[cluster] ${l}\n`)),
  };
  const loadAvgBefore = loadavg().map((x) => round2(x));
  o.progress(`load average ${loadAvgBefore.join(' ')}; starting PostgreSQL and Redis`);
  const services = await clusterServices();
  const keysSqlite: ClusterResult['keysSqlite'] = [];
  const keys: KeysScenario[] = [];
  const chats: ChatScenario[] = [];
  try {
    for (let rep = 1; rep <= o.repeats; rep++) {
      if (!o.only.includes('keys')) continue;
      const k = await keysBench({ participants: o.participants, warmRepeats: o.quick ? 1 : 2 });
      const last = k.warm[k.warm.length - 1] ?? k.cold;
      keysSqlite.push({
        fetchesPerSecond: k.warmFetchesPerSecond,
        p99Ms: k.warmP99Ms,
        cpuPercent: last.cpuPercent,
        errors: k.errors,
      });
      o.progress(
        `keys_sqlite #${rep}: cold ${k.cold.fetchesPerSecond}/s; warm ${k.warmFetchesPerSecond}/s p50 ${k.warmP50Ms} ` +
          `p99 ${k.warmP99Ms} ms, key service CPU ${last.cpuPercent}%, errors ${k.errors}`,
      );
      keys.push(await keysPg(services, 1, rep, o));
      keys.push(await keysPg(services, 2, rep, o));
    }
    for (let rep = 1; rep <= o.repeats; rep++) {
      if (!o.only.includes('chat')) continue;
      chats.push(await chat(services, 1, rep, o));
      chats.push(await chat(services, 3, rep, o));
      chats.push(await chat(services, 3, rep, o, true));
    }
  } finally {
    await services.stop();
  }
  const base = {
    loadAvgBefore,
    loadAvgAfter: loadavg().map((x) => round2(x)),
    participants: Math.floor(o.participants / 2) * 2,
    contacts: o.contacts,
    keysSqlite,
    keys,
    chat: chats,
  };
  return { ...base, summary: summarizeCluster(base) };
}
