/**
 * `pnpm bench [--quick]`: the Latchkey relay against its physical limit (a bare `ws` forwarder)
 * and its peer (Socket.IO rooms) on the same load in the same run, plus client crypto, durable
 * storage and memory per idle connection. Every system under test runs in a child process of
 * its own, the load generator in another, all on 127.0.0.1. Progress goes to stderr; the last
 * line of stdout is one JSON summary. Full mode also writes bench/results/<timestamp>.json and
 * an SVG chart. See docs/benchmarks.md.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { renderChart } from './chart.ts';
import { cryptoBench, signBench, type CryptoResult, type SignResult } from './crypto-bench.ts';
import { Child, type ProcStats } from './ipc.ts';
import type { ConnectParams, RunParams, RunResult, SystemKind } from './load/worker.ts';
import type { IdleResult, LoadResult, ServerUsage } from './load-result.ts';
import { storageBench, type StorageResult } from './storage-bench.ts';
import { chromiumHistoryBench, type ChromiumHistoryResult } from './chromium-bench.ts';
import { filesBench, type FilesResult } from './files-bench.ts';
import { keysBench, type KeysResult } from './keys-bench.ts';
import type { ClusterResult } from './cluster-bench.ts';
import { summarize } from './summary.ts';

const quick = process.argv.includes('--quick');
/**
 * `--load-only`: the load runs alone, no crypto, storage or idle figures; `--with-full`: the
 * `--durability full` run in quick mode too (development aids).
 */
const loadOnly = process.argv.includes('--load-only');
/**
 * `--with-cluster`: also the cluster figures (cluster-bench.ts, issue 17), which need PostgreSQL
 * and Redis (BENCH_PG_URL / BENCH_REDIS_URL or local binaries); never part of the default run.
 */
const withCluster = process.argv.includes('--with-cluster');
/** `--with-files`: the attachments figures in a quick run too (a full run always has them). */
const withFiles = process.argv.includes('--with-files');
const ALL_SYSTEMS: SystemKind[] = ['latchkey', 'ws', 'socketio'];
/** BENCH_SYSTEMS=latchkey,ws runs only those (a development aid; ratios need all three). */
const SYSTEMS = ALL_SYSTEMS.filter(
  (k) => process.env['BENCH_SYSTEMS']?.split(',').includes(k) ?? true,
);
const SERVER_MODULE: Record<SystemKind, string> = {
  latchkey: 'servers/latchkey.ts',
  ws: 'servers/ws-floor.ts',
  socketio: 'servers/socketio.ts',
};
const src = (m: string): string => fileURLToPath(new URL(m, import.meta.url));
const secretHex = randomBytes(32).toString('hex');

const plan = quick
  ? {
      contacts: 500,
      sizes: [200],
      repeats: 1,
      window: 4,
      warm: 600,
      measure: 2000,
      rates: [5000, 2000],
      idle: 2000,
      crypto: 200,
      store: 1000,
    }
  : {
      contacts: 500,
      sizes: [200, 4096],
      repeats: 3,
      window: 4,
      warm: 2000,
      measure: 6000,
      rates: [5000, 2000],
      idle: 10_000,
      crypto: 1000,
      store: 3000,
    };
/** Idle connections opened before the idle measurement starts (not counted). */
const IDLE_WARMUP = 500;
/** Every n-th message of the latency run is sealed and opened for real. */
const SAMPLE_EVERY = 50;

const started = performance.now();
function progress(msg: string): void {
  process.stderr.write(`[bench ${((performance.now() - started) / 1000).toFixed(1)}s] ${msg}\n`);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function usage(a: ProcStats, b: ProcStats): ServerUsage {
  const cpu = b.cpuUser + b.cpuSystem - (a.cpuUser + a.cpuSystem);
  return {
    cpuPercent: Math.round((cpu / 1000 / (b.at - a.at)) * 1000) / 10,
    rssBytes: b.rss,
    loopP99Ms: b.loopP99Ms,
    loopMaxMs: b.loopMaxMs,
  };
}

async function startServer(
  kind: SystemKind,
  durability: 'normal' | 'full' = 'normal',
): Promise<{ server: Child; url: string }> {
  // BENCH_CPU_PROF=DIR profiles the systems under test (node --cpu-prof) into DIR.
  const prof = process.env['BENCH_CPU_PROF'];
  const execArgv = ['--expose-gc', ...(prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : [])];
  const server = new Child(kind, src(SERVER_MODULE[kind]), { secretHex, durability }, execArgv);
  const { port } = (await server.hello) as { port: number };
  return { server, url: `${kind === 'socketio' ? 'http' : 'ws'}://127.0.0.1:${port}` };
}

async function measured(server: Child, gen: Child, p: RunParams): Promise<RunResult & ServerUsage> {
  const running = gen.call<RunResult>('run', p);
  await sleep(p.warmupMs);
  const a = await server.call<ProcStats>('stats');
  await sleep(p.durationMs);
  const b = await server.call<ProcStats>('stats');
  return { ...(await running), ...usage(a, b) };
}

async function loadRun(
  kind: SystemKind,
  size: number,
  repeat: number,
  durability: 'normal' | 'full' = 'normal',
  withLatency = true,
): Promise<LoadResult> {
  const { server, url } = await startServer(kind, durability);
  const gen = new Child(`loadgen(${kind})`, src('load/worker.ts'), { kind, url, secretHex });
  try {
    await gen.hello;
    const conn = await gen.call<{ connections: number; ms: number }>('connect', {
      contacts: plan.contacts,
      size,
      prefix: `r${repeat}s${size}`,
      templates: true,
    } satisfies ConnectParams);
    const throughput = await measured(server, gen, {
      mode: 'window',
      window: plan.window,
      warmupMs: plan.warm,
      durationMs: plan.measure,
      drainMs: 5000,
    });
    const latencies: LoadResult['latencies'] = [];
    for (const rate of withLatency ? plan.rates : []) {
      const r = await measured(server, gen, {
        mode: 'rate',
        rate,
        warmupMs: Math.round(plan.warm / 2),
        durationMs: plan.measure,
        drainMs: 5000,
        sampleEvery: SAMPLE_EVERY,
      });
      latencies.push({ ...r, rate });
    }
    const errors = [throughput, ...latencies].reduce((n, r) => n + r.errors, 0);
    progress(
      `${kind}${durability === 'full' ? ' (durability full)' : ''} ${size} B #${repeat}: ` +
        `${conn.connections} connections in ${conn.ms} ms, ` +
        `${throughput.deliveredPerSecond} msg/s delivered (relay CPU ${throughput.cpuPercent}%)` +
        latencies
          .map(
            (l) =>
              `, at ${l.rate}/s wire p50 ${l.wire.p50} p99 ${l.wire.p99} ms (e2e p50 ${l.e2e.p50} p99 ${l.e2e.p99} ms, CPU ${l.cpuPercent}%, loop p99 ${l.loopP99Ms} max ${l.loopMaxMs} ms)`,
          )
          .join('') +
        `, errors ${errors}`,
    );
    return {
      system: kind,
      size,
      repeat,
      durability,
      connections: conn.connections,
      connectMs: conn.ms,
      throughput,
      latency: latencies[0] ?? { ...throughput, rate: 0 },
      latencies,
    };
  } finally {
    await gen.stop();
    await server.stop();
  }
}

async function idleRun(kind: SystemKind, connections: number): Promise<IdleResult> {
  const { server, url } = await startServer(kind);
  const gen = new Child(`idle(${kind})`, src('load/worker.ts'), { kind, url, secretHex });
  try {
    await gen.hello;
    // Warm-up connections first (JIT, caches, allocator arenas, the store's page cache): what
    // is measured is the memory each further connection adds, not a one-off start-up cost.
    await gen.call('connect', {
      contacts: IDLE_WARMUP / 2,
      size: 200,
      prefix: 'idle-warm',
      templates: false,
      concurrency: 200,
    } satisfies ConnectParams);
    await sleep(300);
    const before = await server.call<ProcStats>('stats', { gc: true });
    const conn = await gen.call<{ connections: number; ms: number }>('connect', {
      contacts: connections / 2,
      size: 200,
      prefix: 'idle',
      templates: false,
      concurrency: 200,
    } satisfies ConnectParams);
    await sleep(1000);
    const after = await server.call<ProcStats & { connections: number }>('stats', { gc: true });
    if (after.connections !== connections + IDLE_WARMUP)
      throw new Error(
        `${kind}: ${after.connections} of ${connections + IDLE_WARMUP} connections open`,
      );
    const r: IdleResult = {
      system: kind,
      connections,
      connectMs: conn.ms,
      rssBeforeBytes: before.rss,
      rssAfterBytes: after.rss,
      bytesPerConnection: Math.round((after.rss - before.rss) / connections),
      heapBytesPerConnection: Math.round((after.heapUsed - before.heapUsed) / connections),
    };
    progress(
      `idle ${kind}: ${connections} connections in ${conn.ms} ms, ${r.bytesPerConnection} B RSS/connection (heap ${r.heapBytesPerConnection} B)`,
    );
    return r;
  } finally {
    await gen.stop(15_000);
    await server.stop(15_000);
  }
}

async function main(): Promise<void> {
  progress(`${quick ? 'quick' : 'full'} run; node ${process.version}, ${cpus().length} cores`);

  progress('crypto: envelope seal+open vs node:crypto and WebCrypto AES-256-GCM');
  const crypto: CryptoResult[] = [];
  for (const size of loadOnly ? [] : [200, 4096]) {
    const r = await cryptoBench(size, plan.crypto);
    crypto.push(r);
    progress(
      `crypto ${size} B: envelope seal+open ${r.envelopeSealOpen}/s (floor ${r.sealOpenFloor}/s), aead(node) ${r.aeadNode}/s, aead(webcrypto) ${r.aeadWebcrypto}/s, ` +
        `aead(noble) ${r.aeadNoble}/s, node:crypto ${r.nodeCrypto}/s, WebCrypto ${r.webCrypto}/s`,
    );
  }
  const sign: SignResult | undefined = loadOnly ? undefined : await signBench(plan.crypto);
  if (sign)
    progress(
      `ed25519: noble sign ${sign.nobleSign}/s verify ${sign.nobleVerify}/s; node:crypto sign ${sign.nodeSign}/s verify ${sign.nodeVerify}/s`,
    );

  progress('storage: SqliteMessageStore, default durability, single vs GroupCommit');
  const storage: StorageResult | undefined = loadOnly
    ? undefined
    : await storageBench(plan.store, 1000);
  const storageFull: StorageResult | undefined = loadOnly
    ? undefined
    : await storageBench(plan.store, 1000, 'FULL');
  for (const s of [storage, storageFull])
    if (s)
      progress(
        `storage (synchronous=${s.synchronous}): single ${s.singlePerSecond}/s, batched ${s.batchedPerSecond}/s in ${s.batchedTransactions} tx/s`,
      );

  const load: LoadResult[] = [];
  for (const size of plan.sizes) {
    const repeats = size === 200 ? plan.repeats : 1;
    for (let rep = 1; rep <= repeats; rep++) {
      for (const kind of SYSTEMS) {
        progress(
          `load: ${kind}, ${plan.contacts} contacts (${plan.contacts * 2} connections), ${size} B, repeat ${rep}/${repeats}`,
        );
        load.push(await loadRun(kind, size, rep));
      }
    }
  }
  if ((!quick || process.argv.includes('--with-full')) && SYSTEMS.includes('latchkey')) {
    for (let rep = 1; rep <= plan.repeats; rep++) {
      progress(`load: latchkey with --durability full, 200 B, repeat ${rep}/${plan.repeats}`);
      load.push(await loadRun('latchkey', 200, rep, 'full', false));
    }
  }

  progress(`keys: ${plan.contacts * 2} participants fetch their contact key at once (key service)`);
  const keys: KeysResult | undefined = loadOnly
    ? undefined
    : await keysBench({ participants: plan.contacts * 2, warmRepeats: quick ? 1 : 2 });
  if (keys)
    progress(
      `keys: cold ${keys.cold.fetchesPerSecond} fetches/s p99 ${keys.cold.latency.p99} ms; ` +
        `warm ${keys.warmFetchesPerSecond} fetches/s p50 ${keys.warmP50Ms} p99 ${keys.warmP99Ms} ms, errors ${keys.errors}`,
    );

  let chromium: ChromiumHistoryResult | undefined;
  if (!quick && !loadOnly) {
    progress('chromium: 1,000 signed history messages opened and rendered (Debian Chromium)');
    chromium = await chromiumHistoryBench({ repeats: 5 });
    progress(
      chromium.skipped
        ? `chromium: skipped: ${chromium.reason}`
        : `chromium: ${chromium.ms} ms (open ${chromium.openMs} ms, render ${chromium.renderMs} ms), errors ${chromium.errors}`,
    );
  }

  let files: FilesResult | undefined;
  if ((!quick && !loadOnly) || withFiles) {
    progress('files: a 50 MB file up and down through the relay, against curl to a static server');
    files = await filesBench({ mb: 50, repeats: quick ? 1 : 3 });
    progress(
      `files: up ${files.files_upload_mb_per_s} MB/s (curl ${files.curl_upload_mb_per_s}), ` +
        `down ${files.files_download_mb_per_s} MB/s (curl ${files.curl_download_mb_per_s}), ` +
        `client peak RSS ${Math.round(files.files_client_peak_rss_bytes / 2 ** 20)} MiB`,
    );
  }

  const idle: IdleResult[] = [];
  for (const kind of loadOnly ? [] : quick ? SYSTEMS.filter((k) => k !== 'socketio') : SYSTEMS) {
    progress(`idle memory: ${kind}, ${plan.idle} connections`);
    idle.push(await idleRun(kind, plan.idle));
  }

  let cluster: ClusterResult | undefined;
  if (withCluster) {
    progress('cluster: key services and relays on PostgreSQL and Redis (issue 17)');
    const { runClusterBench } = await import('./cluster-main.ts');
    // Its own options pass through (--repeats, --participants, --contacts, --only).
    cluster = await runClusterBench(process.argv.slice(2));
  }

  const summary = summarize({
    quick,
    plan,
    load,
    idle,
    crypto,
    storage,
    storageFull,
    keys,
    chromium,
  });
  if (!quick) {
    const dir = fileURLToPath(new URL('../results/', import.meta.url));
    mkdirSync(dir, { recursive: true });
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const machine = {
      nproc: cpus().length,
      cpu: cpus()[0]?.model ?? 'unknown',
      memoryBytes: totalmem(),
      node: process.version,
    };
    const plain = {
      machine,
      plan,
      summary,
      crypto,
      sign,
      storage,
      storageFull,
      load,
      idle,
      keys,
      chromium,
      files,
    };
    writeFileSync(`${dir}${stamp}.json`, `${JSON.stringify(plain, null, 2)}\n`);
    writeFileSync(`${dir}${stamp}.svg`, renderChart(load, summary));
    progress(`wrote bench/results/${stamp}.json and .svg`);
  }
  progress('done');
  process.stdout.write(`${JSON.stringify({ ...summary, ...files, ...cluster?.summary })}\n`);
}

await main();
