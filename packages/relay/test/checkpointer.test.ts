/**
 * WAL checkpoints run in a worker thread (checkpointer.ts), not inside the relay's commits: the
 * store's own connection never checkpoints (wal_autocheckpoint 0), yet once a few MB were
 * appended the database file grows as the worker copies the WAL into it; closing the store
 * stops the worker. With `checkpoints: 'auto'` SQLite's automatic checkpoint stays on.
 */
import { statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteMessageStore } from '../src/store.ts';
import { fakeEnvelope } from './_helpers.ts';

let dir: string;
let path: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'latchkey-ckpt-'));
  path = join(dir, 'messages.db');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Appends about `mb` MB of envelopes with ~1 KB ciphertexts in batches of 100. */
async function fill(store: SqliteMessageStore, mb: number): Promise<void> {
  const ciphertext = 'A'.repeat(1024);
  for (let n = 0; n < mb * 1000; n += 100) {
    await store.appendBatch(
      Array.from({ length: 100 }, (_, i) => ({ ...fakeEnvelope(`c${i}`, 's'), ciphertext })),
    );
  }
}

describe('WAL checkpoints', () => {
  it('run in a worker thread once enough was written, never in the store’s commits', async () => {
    let autocheckpoint = -1;
    const store = new SqliteMessageStore({
      path,
      onOpen: (db) => {
        queueMicrotask(
          () => (autocheckpoint = db.pragma('wal_autocheckpoint', { simple: true }) as number),
        );
      },
    });
    await Promise.resolve();
    expect(autocheckpoint).toBe(0);
    const before = statSync(path).size;
    await fill(store, 3);
    // The worker checkpoints every 100 ms: wait for the database file to take the pages.
    const deadline = Date.now() + 20_000;
    while (statSync(path).size < before + 2_000_000 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    expect(statSync(path).size).toBeGreaterThan(before + 2_000_000);
    await store.close();
  });

  it('stay SQLite’s automatic ones with checkpoints: auto', async () => {
    let autocheckpoint = -1;
    const store = new SqliteMessageStore({
      path,
      checkpoints: 'auto',
      onOpen: (db) => {
        queueMicrotask(
          () => (autocheckpoint = db.pragma('wal_autocheckpoint', { simple: true }) as number),
        );
      },
    });
    await Promise.resolve();
    expect(autocheckpoint).toBe(1000);
    await store.close();
  });
});
