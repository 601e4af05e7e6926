/**
 * Chromium history benchmark (issue 16: "1,000 signed history messages opened and rendered in
 * Chromium in at most 250 ms"): seals a contact's history in Node (history-fixture.ts), bundles
 * the page with the real client and web UI code (chromium/page.ts, chromium/bundle.ts), serves it
 * from 127.0.0.1, and runs it in Debian's Chromium through playwright-core, a fresh page per run.
 * Reported, never asserted; without Chromium the result says skipped and why.
 *
 * `ms` is the median of the `full` runs: the web app's Conversation on a real LatchkeyClient,
 * from the replay asked for to every row in the DOM and laid out. `openMs` (the client alone)
 * and `renderMs` (the Conversation fed opened messages) split it; `historyApiMs` is
 * `client.history()` over the same envelopes.
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, BrowserType } from 'playwright-core';
import { PAGE_GLOBAL, bundlePage } from './chromium/bundle.ts';
import { makeHistory, type HistoryPayload } from './chromium/history-fixture.ts';
import type { Mode, RunTimes } from './chromium/page.ts';

export const CHROMIUM = '/usr/bin/chromium';
const ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const TARGET_MS = 250;
export const MODES: readonly Mode[] = ['full', 'open', 'render', 'history'];
const RUN_TIMEOUT_MS = 60_000;

export interface ChromiumHistoryOptions {
  /** Measured runs of each mode (after one warm-up run); default 5. */
  repeats?: number;
  /** History length; default 1000. */
  messages?: number;
  /** Message text size in bytes; default 200. */
  size?: number;
  executablePath?: string;
  /** Path prefix: writes `<profile>-<mode>.cpuprofile` (Chrome DevTools) of each first run. */
  profile?: string;
  /**
   * The modes to run (default all four); a development aid: the figures of modes left out are
   * NaN (null in JSON), and without `full` the warm-up run is the first mode given.
   */
  modes?: readonly Mode[];
}

export interface ChromiumHistorySkipped {
  skipped: true;
  reason: string;
  messages: number;
}

export interface ChromiumHistoryMeasured {
  skipped: false;
  messages: number;
  size: number;
  repeats: number;
  /** Median full run: replay asked for → every row in the DOM and laid out (the target). */
  ms: number;
  /** Each full run, in order. */
  runsMs: number[];
  /** Each run of every mode, in order (the fastest shows the cost best on a busy machine). */
  modeRunsMs: Record<Mode, number[]>;
  /** Median full run to the next animation frame. */
  frameMs: number;
  /** Median: the client alone, replay asked for → every message opened, checked and emitted. */
  openMs: number;
  /** Median: the Conversation fed the opened messages → every row in the DOM and laid out. */
  renderMs: number;
  /** Median: `client.history()` (readHistory, pages of 500) opening the same history. */
  historyApiMs: number;
  /**
   * Median renderer CPU per run (whole run, connect included) of the full, open and render modes:
   * read these when the machine is busy, the wall times above then grow with the load.
   */
  cpu: { full: RunCpu; open: RunCpu; render: RunCpu };
  /** Messages not shown (or opened) as delivered text, over every run: must be 0. */
  errors: number;
  targetMs: number;
  met: boolean;
  chromium: string;
}

export type ChromiumHistoryResult = ChromiumHistorySkipped | ChromiumHistoryMeasured;

const median = (xs: number[]): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
const round1 = (x: number): number => Math.round(x * 10) / 10;
const medianCpu = (runs: Measured[]): RunCpu => {
  const out = {} as RunCpu;
  for (const k of Object.keys(METRICS) as (keyof RunCpu)[])
    out[k] = round1(median(runs.map((r) => r.cpu[k])));
  return out;
};

/** Serves the page and its script on 127.0.0.1 (a secure context: WebCrypto is there). */
async function serve(script: string): Promise<{ server: Server; url: string }> {
  const html = `<!doctype html><html lang="en"><meta charset="utf-8"><title>history bench</title><body></body><script src="/page.js"></script></html>`;
  const server = createServer((req, res) => {
    const js = req.url === '/page.js';
    res.writeHead(js || req.url === '/' ? 200 : 404, {
      'content-type': js ? 'text/javascript' : 'text/html; charset=utf-8',
      'cache-control': 'no-store',
    });
    res.end(js ? script : req.url === '/' ? html : '');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}/` };
}

/** Renderer CPU over one run (CDP `Performance.getMetrics` deltas, ms): robust on a busy machine. */
export interface RunCpu {
  /** The page's main thread. */
  threadMs: number;
  /** The whole renderer process (WebCrypto works on other threads). */
  processMs: number;
  scriptMs: number;
  layoutMs: number;
  styleMs: number;
  /** Layouts and style recalculations (a forced one each time script reads a stale layout). */
  layouts: number;
  styles: number;
}
type Measured = RunTimes & { cpu: RunCpu };

const METRICS = {
  threadMs: 'ThreadTime',
  processMs: 'ProcessTime',
  scriptMs: 'ScriptDuration',
  layoutMs: 'LayoutDuration',
  styleMs: 'RecalcStyleDuration',
  layouts: 'LayoutCount',
  styles: 'RecalcStyleCount',
} as const;
const COUNTS: ReadonlySet<string> = new Set(['LayoutCount', 'RecalcStyleCount']);

/** One run of `mode` in a fresh page; with `profile`, a CPU profile of it is written there. */
async function runOnce(
  browser: Browser,
  url: string,
  mode: Mode,
  payload: HistoryPayload,
  profile?: string,
): Promise<Measured> {
  const page = await browser.newPage();
  try {
    await page.goto(url);
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Performance.enable');
    const metrics = async (): Promise<Map<string, number>> =>
      new Map((await cdp.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value]));
    if (profile) {
      await cdp.send('Profiler.enable');
      await cdp.send('Profiler.setSamplingInterval', { interval: 100 });
      await cdp.send('Profiler.start');
    }
    const m0 = await metrics();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${mode} run timed out`)), RUN_TIMEOUT_MS);
    });
    const r = await Promise.race([
      page.evaluate(
        ([g, m, p]) =>
          (
            globalThis as unknown as Record<
              string,
              { run(m: Mode, p: HistoryPayload): Promise<RunTimes> }
            >
          )[g]!.run(m, p),
        [PAGE_GLOBAL, mode, payload] as const,
      ),
      timeout,
    ]).finally(() => clearTimeout(timer));
    const m1 = await metrics();
    if (profile) {
      const { profile: cpu } = await cdp.send('Profiler.stop');
      await writeFile(profile, JSON.stringify(cpu));
    }
    const delta = (name: string): number =>
      ((m1.get(name) ?? 0) - (m0.get(name) ?? 0)) * (COUNTS.has(name) ? 1 : 1000);
    const cpu = Object.fromEntries(
      Object.entries(METRICS).map(([k, name]) => [k, round1(delta(name))]),
    ) as unknown as RunCpu;
    return { ...r, cpu };
  } finally {
    await page.close();
  }
}

/**
 * Measures opening and rendering a contact's signed history in Chromium.
 * Never throws for a missing browser: the result then says skipped and why.
 */
export async function chromiumHistoryBench(
  opts: ChromiumHistoryOptions = {},
): Promise<ChromiumHistoryResult> {
  const messages = opts.messages ?? 1000;
  const size = opts.size ?? 200;
  const repeats = opts.repeats ?? 5;
  const executablePath = opts.executablePath ?? CHROMIUM;
  if (!existsSync(executablePath))
    return { skipped: true, reason: `no Chromium at ${executablePath}`, messages };
  let chromium: BrowserType;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (err) {
    return { skipped: true, reason: `playwright-core not available: ${String(err)}`, messages };
  }
  let browser: Browser;
  try {
    browser = await chromium.launch({ executablePath, args: ARGS });
  } catch (err) {
    const reason = err instanceof Error ? err.message.split('\n')[0]! : String(err);
    return { skipped: true, reason: `Chromium did not start: ${reason}`, messages };
  }
  let server: Server | null = null;
  try {
    const [script, payload] = await Promise.all([
      bundlePage({ minify: opts.profile === undefined }),
      makeHistory(messages, size),
    ]);
    const served = await serve(script);
    server = served.server;
    const url = served.url;
    const modes = opts.modes ?? MODES;
    // Warm-up: browser caches, first page.
    await runOnce(browser, url, modes.includes('full') ? 'full' : modes[0]!, payload);
    const times: Record<Mode, Measured[]> = { full: [], open: [], render: [], history: [] };
    for (let i = 0; i < repeats; i++) {
      for (const mode of modes) {
        const profile =
          i === 0 && opts.profile !== undefined ? `${opts.profile}-${mode}.cpuprofile` : undefined;
        times[mode].push(await runOnce(browser, url, mode, payload, profile));
      }
    }
    const all = Object.values(times).flat();
    const errors = all.reduce((n, r) => n + (messages - r.shown), 0);
    const ms = round1(median(times.full.map((r) => r.ms)));
    return {
      skipped: false,
      messages,
      size,
      repeats,
      ms,
      runsMs: times.full.map((r) => round1(r.ms)),
      modeRunsMs: {
        full: times.full.map((r) => round1(r.ms)),
        open: times.open.map((r) => round1(r.ms)),
        render: times.render.map((r) => round1(r.ms)),
        history: times.history.map((r) => round1(r.ms)),
      },
      frameMs: round1(median(times.full.map((r) => r.frameMs))),
      openMs: round1(median(times.open.map((r) => r.ms))),
      renderMs: round1(median(times.render.map((r) => r.ms))),
      historyApiMs: round1(median(times.history.map((r) => r.ms))),
      cpu: {
        full: medianCpu(times.full),
        open: medianCpu(times.open),
        render: medianCpu(times.render),
      },
      errors,
      targetMs: TARGET_MS,
      met: ms <= TARGET_MS,
      chromium: browser.version(),
    };
  } finally {
    server?.close();
    await browser.close();
  }
}
