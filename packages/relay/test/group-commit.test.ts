import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LatchkeyError, type SealedEnvelope } from '@latchkey/protocol';
import { fakeEnvelope } from '../test/_helpers.ts';
import { GroupCommit } from '../src/group-commit.ts';
import { SqliteMessageStore, type AppendResult, type MessageStore } from '../src/store.ts';

let dir: string;
let store: SqliteMessageStore;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'latchkey-gc-'));
  store = new SqliteMessageStore({ path: join(dir, 'messages.db') });
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

/** A store whose commits wait until released, to watch when submitters settle. */
function gated(inner: MessageStore): MessageStore & { release(): void; calls: number } {
  let open: (() => void) | undefined;
  let calls = 0;
  return {
    get stats() {
      return inner.stats;
    },
    get calls() {
      return calls;
    },
    release: () => open?.(),
    async appendBatch(envs: readonly SealedEnvelope[]) {
      calls++;
      await new Promise<void>((r) => (open = r));
      return inner.appendBatch(envs);
    },
    head: (c) => inner.head(c),
    history: (c, s, l) => inner.history(c, s, l),
    close: () => inner.close(),
  };
}

describe('GroupCommit', () => {
  it('commits a burst submitted in one turn in one transaction, in order', async () => {
    const gc = new GroupCommit(store);
    const envs = Array.from({ length: 50 }, () => fakeEnvelope('c1', 'a'));
    const results = await Promise.all(envs.map((e) => gc.submit(e)));
    expect(results.map((r) => (r.ok ? r.seq : 0))).toEqual(envs.map((_, i) => i + 1));
    expect(store.stats.transactions).toBe(1);
    // the next turn is the next transaction
    await gc.submit(fakeEnvelope('c1', 'a'));
    expect(store.stats.transactions).toBe(2);
  });

  it('settles a submit only after its transaction committed; later submits wait for the next batch', async () => {
    const g = gated(store);
    const gc = new GroupCommit(g);
    const settled: AppendResult[] = [];
    const first = [gc.submit(fakeEnvelope('c1', 'a')), gc.submit(fakeEnvelope('c1', 'b'))];
    for (const p of first) void p.then((r) => settled.push(r));
    await new Promise((r) => setImmediate(r));
    expect(g.calls).toBe(1);
    const late = gc.submit(fakeEnvelope('c1', 'a'));
    await new Promise((r) => setTimeout(r, 20));
    expect(settled).toHaveLength(0);
    expect(store.stats.transactions).toBe(0);
    g.release();
    await Promise.all(first);
    expect(settled.map((r) => r.ok && r.seq)).toEqual([1, 2]);
    await new Promise((r) => setTimeout(r, 5));
    expect(g.calls).toBe(2);
    g.release();
    expect(await late).toMatchObject({ ok: true, seq: 3 });
  });

  it('commits the next batch while the previous one is flushed (FULL), settling each in order once durable', async () => {
    const flushes: (() => void)[] = [];
    const full = new SqliteMessageStore({
      path: join(dir, 'full.db'),
      synchronous: 'FULL',
      syncFile: () => new Promise<void>((resolve) => flushes.push(resolve)),
    });
    const gc = new GroupCommit(full);
    const settled: number[] = [];
    const a = gc.submit(fakeEnvelope('c1', 'a')).then((r) => settled.push(r.ok ? r.seq : 0));
    while (flushes.length === 0) await new Promise((r) => setImmediate(r));
    const b = gc.submit(fakeEnvelope('c1', 'b')).then((r) => settled.push(r.ok ? r.seq : 0));
    // b is committed (a second transaction) while a's flush is still running.
    while (full.stats.transactions < 2) await new Promise((r) => setImmediate(r));
    expect(settled).toEqual([]);
    let flushed = false;
    const drained = gc.flush().then(() => (flushed = true));
    flushes.shift()?.(); // a's flush; b waits for the next one
    await a;
    expect(settled).toEqual([1]);
    while (flushes.length === 0) await new Promise((r) => setImmediate(r));
    expect(flushed).toBe(false);
    flushes.shift()?.();
    await Promise.all([b, drained]);
    expect(settled).toEqual([1, 2]);
    await full.close();
  });

  it('gives the event loop a turn between the batches of a backlog', async () => {
    const events: string[] = [];
    const watched: MessageStore = {
      get stats() {
        return store.stats;
      },
      appendBatch: (envs) => {
        events.push(`commit ${envs.length}`);
        if (events.length === 1) setImmediate(() => events.push('io'));
        return store.appendBatch(envs);
      },
      head: (c) => store.head(c),
      history: (c, s, l) => store.history(c, s, l),
      close: () => store.close(),
    };
    const gc = new GroupCommit(watched, { maxBatch: 100 });
    const results = await Promise.all(
      Array.from({ length: 250 }, () => gc.submit(fakeEnvelope('c1', 'a'))),
    );
    expect(results.map((r) => (r.ok ? r.seq : 0))).toEqual(results.map((_, i) => i + 1));
    expect(events).toEqual(['commit 100', 'io', 'commit 100', 'commit 50']);
  });

  it('rejects every submit of a failed batch with UNAVAILABLE and goes on with the next', async () => {
    let fail = true;
    const flaky: MessageStore = {
      get stats() {
        return store.stats;
      },
      appendBatch: (e) =>
        fail ? Promise.reject(new Error('disk I/O error')) : store.appendBatch(e),
      head: (c) => store.head(c),
      history: (c, s, l) => store.history(c, s, l),
      close: () => store.close(),
    };
    const errors: string[] = [];
    const gc = new GroupCommit(flaky, { onError: (e, n) => errors.push(`${e.code}:${n}`) });
    const outcomes = await Promise.allSettled([
      gc.submit(fakeEnvelope('c1', 'a')),
      gc.submit(fakeEnvelope('c1', 'a')),
    ]);
    for (const o of outcomes) {
      expect(o.status).toBe('rejected');
      expect(LatchkeyError.is((o as PromiseRejectedResult).reason, 'UNAVAILABLE')).toBe(true);
    }
    expect(errors).toEqual(['UNAVAILABLE:2']);
    fail = false;
    expect(await gc.submit(fakeEnvelope('c1', 'a'))).toMatchObject({ ok: true, seq: 1 });
  });

  it('flush() commits what is queued without waiting for the next turn', async () => {
    const gc = new GroupCommit(store);
    const p = gc.submit(fakeEnvelope('c1', 'a'));
    expect(gc.pending).toBe(1);
    await gc.flush();
    expect(gc.pending).toBe(0);
    expect(await store.head('c1')).toBe(1);
    expect(await p).toMatchObject({ seq: 1 });
  });
});
