/**
 * Completing a shred on the SQLite wrapped store with generations of an internal KEK: a copy of
 * the key database taken before a shred opens nothing under any KEK that still exists once the
 * shred is completed; one completion covers many shreds; an interrupted completion is finished
 * by running it again, losing nothing; the rewrap cost for many keys.
 */
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { deriveKek, unwrapContentKey } from '@latchkey/crypto/wrap';
import { codeOf, tempDir } from './_helpers.ts';
import { openWrappedKeyManager } from '../src/stores/sqlite.ts';
import { createInternalWrapper } from '../src/wrappers/internal.ts';
import type { KekGenerations } from '../src/key-wrapper.ts';
import { completeShreds, formatShredCompletion } from '../src/shred-completion.ts';

const hex = (k: Uint8Array): string => Buffer.from(k).toString('hex');

/** Master keys per generation, "destroyed" by forgetting them, as the key service does with its file. */
function memoryGenerations(): KekGenerations & {
  keys: Map<number, Uint8Array>;
  destroyed: number[];
  failDestroy: boolean;
} {
  const keys = new Map<number, Uint8Array>([[1, new Uint8Array(32).fill(1)]]);
  const g = {
    keys,
    destroyed: [] as number[],
    failDestroy: false,
    async wrapper(generation: number, { create }: { create: boolean }) {
      let k = keys.get(generation);
      if (k === undefined) {
        if (!create) throw new Error(`no generation ${generation}`);
        k = crypto.getRandomValues(new Uint8Array(32));
        keys.set(generation, k);
      }
      return createInternalWrapper(k);
    },
    async destroy(generation: number) {
      if (g.failDestroy) throw new Error('KMS down');
      keys.delete(generation);
      g.destroyed.push(generation);
    },
  };
  return g;
}

let dir: string;
let cleanup: () => void;
let path: string;
beforeEach(() => {
  ({ dir, cleanup } = tempDir());
  path = join(dir, 'keys', 'keys.db');
});
afterEach(() => cleanup());

/** How many stored keys of a database file open under any KEK that still exists. */
async function openable(file: string, masters: Iterable<Uint8Array>): Promise<number> {
  const db = new Database(file, { readonly: true });
  const rows = db
    .prepare<[], { contact_id: string; epoch: number; wrapped: Uint8Array }>(
      'SELECT contact_id, epoch, wrapped FROM content_keys',
    )
    .all();
  db.close();
  let n = 0;
  for (const m of masters) {
    const kek = deriveKek(m);
    for (const r of rows) {
      try {
        (await unwrapContentKey(kek, r.wrapped, { contactId: r.contact_id, epoch: r.epoch })).fill(
          0,
        );
        n++;
      } catch {
        // does not open
      }
    }
  }
  return n;
}

/** A copy of the key database as a file backup would take it (WAL checkpointed first). */
function checkpointCopy(to: string): void {
  const raw = new Database(path);
  raw.pragma('wal_checkpoint(TRUNCATE)');
  raw.close();
  copyFileSync(path, to);
}

describe('completing a shred', () => {
  it('a copy taken before the shred opens nothing once completed; live keys stay the same', async () => {
    const gens = memoryGenerations();
    const km = await openWrappedKeyManager({ path, wrapper: gens });
    const before = new Map<string, string>();
    for (const c of ['doomed', 'kept', 'other']) {
      before.set(c, hex((await km.getContentKey(c)).key));
      await km.rotate(c);
      before.set(`${c}/1`, hex((await km.getContentKey(c)).key));
    }
    expect(await km.keyGeneration()).toEqual({ generation: 1, taintedSince: null, retiring: [] });
    const copy = join(dir, 'before-shred.db');
    checkpointCopy(copy);

    // Nothing pending: a completion does nothing (no rewrap, no new generation).
    expect(formatShredCompletion(await completeShreds(km, gens))).toBe(
      'shred complete: nothing to retire (key generation 1 is current)',
    );
    await km.destroy('doomed');
    await km.destroy('other');
    await km.destroy('doomed'); // again: nothing more removed
    expect((await km.keyGeneration()).taintedSince).toEqual(expect.any(Number));
    // Between the shred and the completion the copy still opens under the live KEK: the window.
    expect(await openable(copy, gens.keys.values())).toBe(6);

    const done = await completeShreds(km, gens);
    expect(done).toEqual({ retired: [1], rewrapped: 2, generation: 2 });
    expect(formatShredCompletion(done)).toBe(
      'shred complete: key generation 1 retired, 2 keys re-wrapped',
    );
    expect(gens.destroyed).toEqual([1]);
    expect(await km.keyGeneration()).toEqual({ generation: 2, taintedSince: null, retiring: [] });
    expect(await openable(copy, gens.keys.values())).toBe(0);
    expect(hex((await km.getContentKey('kept', 0)).key)).toBe(before.get('kept'));
    expect(hex((await km.getContentKey('kept', 1)).key)).toBe(before.get('kept/1'));
    expect(await codeOf(km.getContentKey('doomed'))).toBe('NOT_FOUND');
    await km.close();

    // Reopened: the store opens its current generation (2).
    const again = await openWrappedKeyManager({ path, wrapper: gens });
    expect(hex((await again.getContentKey('kept', 1)).key)).toBe(before.get('kept/1'));
    expect((await completeShreds(again, gens)).retired).toEqual([]);
    await again.close();
  });

  it('an interrupted completion is finished by running it again; nothing is lost', async () => {
    const gens = memoryGenerations();
    const km = await openWrappedKeyManager({ path, wrapper: gens });
    const kept = hex((await km.getContentKey('kept')).key);
    await km.getContentKey('doomed');
    await km.destroy('doomed');
    // The old KEK cannot be destroyed (the backend is down) after the rewrap committed.
    gens.failDestroy = true;
    await expect(completeShreds(km, gens)).rejects.toThrow('KMS down');
    expect(await km.keyGeneration()).toEqual({ generation: 2, taintedSince: null, retiring: [1] });
    expect(hex((await km.getContentKey('kept')).key)).toBe(kept);
    gens.failDestroy = false;
    expect(await completeShreds(km, gens)).toEqual({ retired: [1], rewrapped: 0, generation: 2 });
    expect(gens.keys.has(1)).toBe(false);
    await km.close();

    // Killed after the new generation's KEK was made, before the rewrap: the next run reuses it.
    const km2 = await openWrappedKeyManager({ path, wrapper: gens });
    await km2.getContentKey('x');
    await km2.destroy('x');
    await (await gens.wrapper(3, { create: true })).close();
    const made = gens.keys.get(3);
    expect(await completeShreds(km2, gens)).toEqual({ retired: [2], rewrapped: 1, generation: 3 });
    expect(gens.keys.get(3)).toBe(made);
    expect(hex((await km2.getContentKey('kept')).key)).toBe(kept);
    await km2.close();
  });

  it('a store from before generations that already shredded starts tainted', async () => {
    const gens = memoryGenerations();
    const km = await openWrappedKeyManager({ path, wrapper: gens });
    await km.getContentKey('a');
    await km.destroy('a');
    await km.close();
    // Back to schema 1, as an older build left it.
    const raw = new Database(path);
    raw.exec('DROP TABLE kek_generations; DROP TABLE destroy_notices');
    raw.pragma('user_version = 1');
    raw.close();
    const again = await openWrappedKeyManager({ path, wrapper: gens });
    expect((await again.keyGeneration()).taintedSince).toEqual(expect.any(Number));
    await again.close();
  });

  it('one completion covers many shreds; rewrap time for 2,000 keys', async () => {
    const gens = memoryGenerations();
    const km = await openWrappedKeyManager({ path, wrapper: gens });
    for (let i = 0; i < 2000; i++) await km.getContentKey(`c${i}`);
    for (let i = 0; i < 50; i++) await km.destroy(`c${i}`);
    const t0 = performance.now();
    const done = await completeShreds(km, gens);
    const ms = performance.now() - t0;
    console.log(`shred completion: ${done.rewrapped} keys re-wrapped in ${ms.toFixed(0)} ms`);
    expect(done).toEqual({ retired: [1], rewrapped: 1950, generation: 2 });
    await km.close();
  }, 60_000);
});
