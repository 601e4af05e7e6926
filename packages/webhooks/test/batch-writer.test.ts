/** The ordered batches the PostgreSQL outbox writes its events in (src/_batch-writer.ts). */
import { describe, expect, it } from 'vitest';
import { BatchWriter } from '../src/_batch-writer.ts';

describe('BatchWriter', () => {
  it('writes in push order, gathering what arrives during a write into the next batch', async () => {
    const batches: number[][] = [];
    const w = new BatchWriter<number, string>(
      async (items) => {
        batches.push(items);
        await Promise.resolve();
        return items.map((i) => `r${i}`);
      },
      3,
      100,
    );
    const out = await Promise.all([1, 2, 3, 4, 5].map((i) => w.push(i)));
    expect(out).toEqual(['r1', 'r2', 'r3', 'r4', 'r5']);
    expect(batches.flat()).toEqual([1, 2, 3, 4, 5]);
    expect(batches.every((b) => b.length <= 3)).toBe(true);
    await w.flush();
  });

  it('a failed batch rejects its items only; a full queue refuses more', async () => {
    let fail = true;
    const w = new BatchWriter<number, number>(
      async (items) => {
        if (fail) {
          fail = false;
          throw new Error('database down');
        }
        return items;
      },
      1,
      2,
    );
    const a = w.push(1); // taken at once: the two after it wait
    const b = w.push(2);
    const c = w.push(3);
    await expect(w.push(4)).rejects.toThrow(RangeError);
    await expect(a).rejects.toThrow('database down');
    await expect(b).resolves.toBe(2);
    await expect(c).resolves.toBe(3);
    await w.flush();
  });
});
