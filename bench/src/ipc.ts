/**
 * Request/reply over the IPC channel of child_process.fork: the parent calls a named method of
 * a child and awaits its answer; the child registers handlers. Children exit when the parent
 * goes away, so a crashed benchmark leaves nothing running.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

interface Request {
  id: number;
  method: string;
  params: unknown;
}
interface Reply {
  id: number;
  result?: unknown;
  error?: string;
}
interface Hello {
  hello: unknown;
}

const CHILD_ENTRY = fileURLToPath(new URL('../bin/child.mjs', import.meta.url));

/** A forked child process that answers method calls. */
export class Child {
  readonly #proc: ChildProcess;
  readonly #pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void }
  >();
  #next = 1;
  #exited = false;
  /** Resolves with the child's first message (`hello`), e.g. the port it listens on. */
  readonly hello: Promise<unknown>;

  constructor(name: string, module: string, config: unknown, execArgv: string[] = []) {
    this.#proc = fork(CHILD_ENTRY, [module, JSON.stringify(config)], {
      execArgv,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let helloResolve!: (v: unknown) => void;
    let helloReject!: (e: Error) => void;
    this.hello = new Promise((res, rej) => {
      helloResolve = res;
      helloReject = rej;
    });
    this.#proc.on('message', (m: Reply | Hello) => {
      if ('hello' in m) {
        helloResolve(m.hello);
        return;
      }
      const p = this.#pending.get(m.id);
      if (!p) return;
      this.#pending.delete(m.id);
      if (m.error !== undefined) p.reject(new Error(`${name}: ${m.error}`));
      else p.resolve(m.result);
    });
    this.#proc.on('exit', (code, signal) => {
      this.#exited = true;
      const e = new Error(`${name} exited (code ${code ?? 'none'}, signal ${signal ?? 'none'})`);
      helloReject(e);
      for (const p of this.#pending.values()) p.reject(e);
      this.#pending.clear();
    });
  }

  get pid(): number | undefined {
    return this.#proc.pid;
  }

  /** Calls `method` in the child. @throws Error when the child fails or exits. */
  call<T>(method: string, params: unknown = {}): Promise<T> {
    if (this.#exited) return Promise.reject(new Error('child has exited'));
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.#proc.send({ id, method, params } satisfies Request);
    });
  }

  /** Asks the child to stop, and kills it if it has not exited within `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    if (this.#exited) return;
    const exited = new Promise<void>((resolve) => this.#proc.once('exit', () => resolve()));
    this.call('stop').catch(() => undefined);
    const timer = setTimeout(() => this.#proc.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }
}

/** Child side: the JSON config passed by the parent. */
export function childConfig<T>(): T {
  const raw = process.argv[3];
  if (raw === undefined) throw new Error('missing config argument');
  return JSON.parse(raw) as T;
}

type Handler = (params: never) => unknown;

/**
 * Child side: answers the parent's calls with `handlers`, sends `hello`, and exits when the
 * parent disconnects. `stop` is answered, then the process exits after `onStop`.
 */
export function serve(
  hello: unknown,
  handlers: Record<string, Handler>,
  onStop?: () => Promise<void>,
): void {
  const send = (m: Reply | Hello): void => {
    if (process.connected) process.send?.(m);
  };
  process.on('disconnect', () => process.exit(0));
  process.on('message', (m: Request) => {
    if (m.method === 'stop') {
      void (async () => {
        try {
          await onStop?.();
        } finally {
          send({ id: m.id, result: null });
          setTimeout(() => process.exit(0), 20);
        }
      })();
      return;
    }
    const h = handlers[m.method];
    if (!h) {
      send({ id: m.id, error: `no method ${m.method}` });
      return;
    }
    Promise.resolve()
      .then(() => h(m.params as never))
      .then(
        (result) => send({ id: m.id, result: result ?? null }),
        (err: unknown) =>
          send({ id: m.id, error: err instanceof Error ? err.message : String(err) }),
      );
  });
  send({ hello });
}

/** What a server child reports about itself: cumulative CPU (µs) and memory (bytes). */
export interface ProcStats {
  at: number;
  cpuUser: number;
  cpuSystem: number;
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  /** Event-loop delay since the previous sample: p99 and maximum (ms). */
  loopP99Ms: number;
  loopMaxMs: number;
}

const loop = monitorEventLoopDelay({ resolution: 1 });
loop.enable();

/** Samples this process's CPU and memory; runs a full GC first when `gc` is true and exposed. */
export function procStats(gc = false): ProcStats {
  const g = (globalThis as { gc?: () => void }).gc;
  if (gc && g) {
    g();
    g();
  }
  const cpu = process.cpuUsage();
  const mem = process.memoryUsage();
  return {
    at: performance.now() + performance.timeOrigin,
    cpuUser: cpu.user,
    cpuSystem: cpu.system,
    rss: mem.rss,
    heapUsed: mem.heapUsed,
    external: mem.external,
    arrayBuffers: mem.arrayBuffers,
    ...loopDelay(),
  };
}

function loopDelay(): { loopP99Ms: number; loopMaxMs: number } {
  const r = {
    loopP99Ms: Math.round(loop.percentile(99) / 1e4) / 100,
    loopMaxMs: Math.round(loop.max / 1e4) / 100,
  };
  loop.reset();
  return r;
}
