/**
 * `synchronous: 'FULL'` (wal-sync.ts): an append resolves only after the WAL file was flushed
 * to disk, the flush runs off the event loop, and until it completes nobody can read the new
 * messages (a power loss could take them back and give their seqs to others). A failed flush
 * fails the batch with UNAVAILABLE and keeps its messages hidden until a later flush succeeds.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LatchkeyError } from '@latchkey/protocol';
import { SqliteMessageStore } from '../src/store.ts';
import { syncFile } from '../src/wal-sync.ts';
import { fakeEnvelope } from './_helpers.ts';

let dir: string;
let path: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'latchkey-store-full-'));
  path = join(dir, 'messages.db');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A flush the test completes (or fails) by hand, recording the paths it was asked for. */
function manualSync(): {
  syncFile: (p: string) => Promise<void>;
  paths: string[];
  finish: (err?: Error) => void;
  pending: () => number;
} {
  const waiting: { resolve: () => void; reject: (e: Error) => void }[] = [];
  const paths: string[] = [];
  return {
    paths,
    syncFile: (p) =>
      new Promise<void>((resolve, reject) => {
        paths.push(p);
        waiting.push({ resolve, reject });
      }),
    finish: (err) => {
      const w = waiting.shift();
      if (!w) throw new Error('no flush running');
      if (err) w.reject(err);
      else w.resolve();
    },
    pending: () => waiting.length,
  };
}

const settled = async (p: Promise<unknown>): Promise<boolean> => {
  let done = false;
  void p.then(
    () => (done = true),
    () => (done = true),
  );
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  return done;
};

describe('SqliteMessageStore, synchronous FULL', () => {
  it('resolves an append only after the WAL is flushed, and hides it from reads until then', async () => {
    const sync = manualSync();
    const store = new SqliteMessageStore({ path, synchronous: 'FULL', syncFile: sync.syncFile });
    const ea = fakeEnvelope('c1', 'a');
    const eb = fakeEnvelope('c1', 'b');
    {
      const first = store.appendBatch([ea]);
      expect(await settled(first)).toBe(false);
      expect(sync.paths).toEqual([`${path}-wal`]);
      sync.finish();
      expect(await first).toMatchObject([{ ok: true, seq: 1 }]);

      const second = store.appendBatch([eb, fakeEnvelope('c2', 'x')]);
      expect(await settled(second)).toBe(false);
      // Committed but not on disk: neither the head nor history shows it.
      expect(await store.head('c1')).toBe(1);
      expect(await store.head('c2')).toBe(0);
      const page = await store.history('c1', 0, 10);
      expect(page.envelopes.map((e) => e.seq)).toEqual([1]);
      expect(page).toMatchObject({ head: 1, more: false });
      sync.finish();
      expect(await second).toMatchObject([
        { ok: true, seq: 2 },
        { ok: true, seq: 1 },
      ]);
      expect(await store.head('c1')).toBe(2);
      expect((await store.history('c1', 0, 10)).envelopes.map((e) => e.msgId)).toEqual([
        ea.msgId,
        eb.msgId,
      ]);
    }
    await store.close();
  });

  it('covers the commits made while a flush runs with one more flush', async () => {
    const sync = manualSync();
    const store = new SqliteMessageStore({ path, synchronous: 'FULL', syncFile: sync.syncFile });
    const a = store.appendBatch([fakeEnvelope('c1', 'a')]);
    const b = store.appendBatch([fakeEnvelope('c1', 'b')]);
    const c = store.appendBatch([fakeEnvelope('c1', 'c')]);
    await settled(a);
    expect(sync.pending()).toBe(1); // b and c wait for the next flush, which starts after a's
    sync.finish();
    expect(await a).toMatchObject([{ seq: 1 }]);
    expect(await settled(b)).toBe(false);
    expect(sync.pending()).toBe(1);
    sync.finish();
    expect(await b).toMatchObject([{ seq: 2 }]);
    expect(await c).toMatchObject([{ seq: 3 }]);
    await store.close();
  });

  it('fails the batch when the flush fails and shows it only once a later flush succeeds', async () => {
    const sync = manualSync();
    const store = new SqliteMessageStore({ path, synchronous: 'FULL', syncFile: sync.syncFile });
    const e = fakeEnvelope('c1', 'a');
    const failed = store.appendBatch([e]);
    await settled(failed);
    sync.finish(Object.assign(new Error('EIO'), { code: 'EIO' }));
    await expect(failed).rejects.toSatisfy((err) => LatchkeyError.is(err, 'UNAVAILABLE'));
    expect(await store.head('c1')).toBe(0);
    // The client retries: the duplicate is answered only once it is on disk.
    const retry = store.appendBatch([e]);
    await settled(retry);
    expect(await store.head('c1')).toBe(0);
    sync.finish();
    expect(await retry).toMatchObject([{ ok: true, seq: 1, duplicate: true }]);
    expect(await store.head('c1')).toBe(1);
    await store.close();
  });

  it('waits for the disk on membership writes too', async () => {
    const sync = manualSync();
    const store = new SqliteMessageStore({ path, synchronous: 'FULL', syncFile: sync.syncFile });
    const t = Date.now();
    const admitted = store.admit({ contactId: 'c1', participantId: 'p1', role: 'visitor' }, t, {
      maxParticipants: 2,
      contactTtlMs: 60_000,
    });
    expect(await settled(admitted)).toBe(false);
    sync.finish();
    await admitted;
    await store.close();
  });

  it('flushes the real WAL file with the default flush', async () => {
    const store = new SqliteMessageStore({ path, synchronous: 'FULL' });
    expect(await store.appendBatch([fakeEnvelope('c1', 'a')])).toMatchObject([{ seq: 1 }]);
    await syncFile(`${path}-wal`);
    await expect(syncFile(join(dir, 'missing'))).rejects.toThrow();
    await store.close();
  });
});
