/**
 * WAL checkpoints off the event loop. SQLite's automatic checkpoint runs inside the commit that
 * crosses 1,000 WAL pages: on the relay's only thread it copies ~4 MB into the database file and
 * fsyncs it, stopping every socket for tens of milliseconds a few times per second under load
 * (about half of the append time in a 30,000-message run here). The store turns the automatic
 * checkpoint off on its own connection and, once it has written enough for a checkpoint to
 * matter, starts this worker thread: a second connection to the same file that runs
 * `wal_checkpoint(PASSIVE)` every 100 ms. A passive checkpoint never blocks the writer or the
 * readers; SQLite keeps it safe across connections and crashes (a checkpoint only copies
 * committed frames). When the worker cannot start or dies, the store falls back to automatic
 * checkpoints on its own connection.
 *
 * The worker is a small JavaScript program (evaluated, so it runs the same from the TypeScript
 * source and from the built package); it loads better-sqlite3 from where this module resolves it.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** WAL pages (4 KiB) after which SQLite's automatic checkpoint would run; ours matches it. */
export const CHECKPOINT_PAGES = 1000;
const INTERVAL_MS = 100;

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.path, { fileMustExist: true });
db.pragma('busy_timeout = 1000');
let stopped = false;
const tick = () => {
  if (stopped) return;
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch (err) {
    // SQLITE_BUSY and the like: the next tick tries again
  }
  setTimeout(tick, workerData.intervalMs);
};
parentPort.on('message', (m) => {
  if (m !== 'stop') return;
  stopped = true;
  db.close();
  parentPort.close();
});
tick();
`;

export interface CheckpointerOptions {
  /** The database file. */
  path: string;
  /** The worker failed: the caller turns automatic checkpoints back on. */
  onFailure: (err: Error) => void;
}

/** A running checkpoint worker; `stop` ends it (and its connection) before the store closes. */
export class Checkpointer {
  readonly #worker: Worker;
  #stopped = false;

  constructor(opts: CheckpointerOptions) {
    const module = createRequire(import.meta.url).resolve('better-sqlite3');
    this.#worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { module, path: opts.path, intervalMs: INTERVAL_MS },
    });
    this.#worker.unref();
    this.#worker.on('error', (err) => {
      if (!this.#stopped) opts.onFailure(err);
    });
    this.#worker.on('exit', (code) => {
      if (!this.#stopped) opts.onFailure(new Error(`checkpoint worker exited with ${code}`));
    });
  }

  /** Stops the worker; resolves once it has closed its connection and exited. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    const exited = new Promise<void>((resolve) => this.#worker.once('exit', () => resolve()));
    this.#worker.postMessage('stop');
    const timer = setTimeout(() => void this.#worker.terminate(), 5000);
    await exited;
    clearTimeout(timer);
  }
}
