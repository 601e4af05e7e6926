/**
 * `synchronous: 'FULL'` without stalling the event loop. SQLite's own FULL fsyncs the WAL inside
 * every commit, on the relay's only thread: the loop stops for the length of an fsync once per
 * group commit. Instead the connection commits with `synchronous=NORMAL` (the frames reach the
 * WAL file, not yet the disk) and this class fsyncs the WAL file on libuv's thread pool before
 * the batch's appends resolve, so an ack still means "on disk" while the loop keeps serving
 * sockets. One fsync covers every commit made before it started; commits made while one runs
 * wait for the next.
 *
 * Until its fsync completes, a committed message must not be shown to anyone either: a power
 * loss could take it back and its seq would then be given to another message. So the store
 * asks `cap` before every read: messages of a contact from its first unsynced seq on stay
 * hidden (they reach the members through the fan-out after the ack, as every message does).
 */
import { open } from 'node:fs/promises';

/** Flushes a file to disk (fdatasync); injectable for tests. */
export type SyncFile = (path: string) => Promise<void>;

export const syncFile: SyncFile = async (path) => {
  const handle = await open(path, 'r');
  try {
    await handle.datasync();
  } finally {
    await handle.close();
  }
};

interface Unsynced {
  commit: number;
  firstSeq: number;
}

export class WalSync {
  readonly #path: string;
  readonly #sync: SyncFile;
  /** Commits counted so far; a sync that starts at n covers commits 1..n. */
  #commits = 0;
  #synced = 0;
  /** Per contact, its unsynced commits in order: the first seq each one added. */
  readonly #unsynced = new Map<string, Unsynced[]>();
  #running: Promise<void> | undefined;
  #waiters: { commit: number; resolve: () => void; reject: (e: unknown) => void }[] = [];

  constructor(walPath: string, sync: SyncFile = syncFile) {
    this.#path = walPath;
    this.#sync = sync;
  }

  /**
   * Records a commit that added messages from `firstSeq` on per contact; its messages stay
   * hidden from reads until `durable` resolves for it.
   * @returns the commit's number, for `durable`.
   */
  committed(firstSeqs: Iterable<[contactId: string, firstSeq: number]>): number {
    const commit = ++this.#commits;
    for (const [contactId, firstSeq] of firstSeqs) {
      const list = this.#unsynced.get(contactId);
      if (list) list.push({ commit, firstSeq });
      else this.#unsynced.set(contactId, [{ commit, firstSeq }]);
    }
    return commit;
  }

  /** The first seq of `contactId` not yet on disk (reads stop before it), if any. */
  cap(contactId: string): number | undefined {
    return this.#unsynced.get(contactId)?.[0]?.firstSeq;
  }

  /**
   * Resolves once commit `commit` is on disk.
   * @throws the fsync's error; the commit stays hidden until a later fsync succeeds.
   */
  durable(commit: number): Promise<void> {
    if (commit <= this.#synced) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.#waiters.push({ commit, resolve, reject });
      this.#kick();
    });
  }

  /** Starts an fsync unless one runs (the one that runs then starts the next). */
  #kick(): void {
    if (this.#running || this.#waiters.length === 0) return;
    const upTo = this.#commits;
    this.#running = this.#sync(this.#path).then(
      () => this.#done(upTo, undefined),
      (err: unknown) => this.#done(upTo, err ?? new Error('fsync failed')),
    );
  }

  #done(upTo: number, err: unknown): void {
    this.#running = undefined;
    const covered = this.#waiters.filter((w) => w.commit <= upTo);
    this.#waiters = this.#waiters.filter((w) => w.commit > upTo);
    if (err === undefined) {
      this.#synced = Math.max(this.#synced, upTo);
      for (const [contactId, list] of this.#unsynced) {
        while (list.length > 0 && (list[0] as Unsynced).commit <= upTo) list.shift();
        if (list.length === 0) this.#unsynced.delete(contactId);
      }
      for (const w of covered) w.resolve();
    } else {
      for (const w of covered) w.reject(err);
    }
    this.#kick();
  }
}
