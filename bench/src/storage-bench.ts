/**
 * Storage benchmark: durable, acknowledged writes per second with the relay's SqliteMessageStore
 * on this machine's disk, in the default durability (WAL, synchronous=NORMAL: a commit survives a
 * process crash) or with `synchronous: 'FULL'` (every commit's WAL flushed before it resolves). `single`: one envelope per transaction, each awaited before the next (what a relay without
 * batching does). `batched`: `concurrency` writers submit through GroupCommit, as the relay's
 * send path does, so one transaction (one fsync) carries every envelope of an event-loop turn.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GroupCommit, SqliteMessageStore } from '@latchkey/relay';
import type { SealedEnvelope } from '@latchkey/protocol';
import { randomBytes } from '@latchkey/crypto/random';
import { makeParticipant, makeServiceKey, messageText, sealText } from './load/fixtures.ts';

export interface StorageResult {
  synchronous: string;
  singlePerSecond: number;
  batchedPerSecond: number;
  batchedTransactions: number;
  concurrency: number;
}

export async function storageBench(
  ms: number,
  concurrency: number,
  synchronous: 'NORMAL' | 'FULL' = 'NORMAL',
): Promise<StorageResult> {
  const dir = mkdtempSync(join(tmpdir(), 'latchkey-bench-store-'));
  const store = new SqliteMessageStore({ path: join(dir, 'messages.db'), synchronous });
  try {
    const service = makeServiceKey();
    const contacts = 100;
    const templates: SealedEnvelope[] = [];
    for (let i = 0; i < contacts; i++) {
      const p = makeParticipant(service, `store-c${i}`, `v${i}`, 'visitor');
      templates.push(await sealText(p, randomBytes(32), messageText(200)));
    }
    let counter = 0;
    const next = (): SealedEnvelope => {
      const n = counter++;
      return { ...templates[n % contacts]!, msgId: `store_${n.toString(36).padStart(12, '0')}` };
    };

    let t0 = performance.now();
    let single = 0;
    while (performance.now() - t0 < ms) {
      const [r] = await store.appendBatch([next()]);
      if (!r?.ok) throw new Error('append failed');
      single++;
    }
    const singlePerSecond = Math.round((single * 1000) / (performance.now() - t0));

    const gc = new GroupCommit(store);
    const tx0 = store.stats.transactions;
    let batched = 0;
    t0 = performance.now();
    const end = t0 + ms;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < end) {
          const r = await gc.submit(next());
          if (!r.ok) throw new Error('append failed');
          batched++;
        }
      }),
    );
    const elapsed = performance.now() - t0;
    return {
      synchronous: store.durability.synchronous,
      singlePerSecond,
      batchedPerSecond: Math.round((batched * 1000) / elapsed),
      batchedTransactions: Math.round(((store.stats.transactions - tx0) * 1000) / elapsed),
      concurrency,
    };
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
