import { describe, expect, it } from 'vitest';
import { runAsync, runSync, wait, type Flow } from '../src/flow.ts';

function* add(a: number | Promise<number>, b: number | Promise<number>): Flow<number> {
  return (yield* wait(a)) + (yield* wait(b));
}

describe('flows', () => {
  it('run the same logic over values and over promises', async () => {
    expect(runSync(add(1, 2))).toBe(3);
    expect(await runAsync(add(Promise.resolve(1), 2))).toBe(3);
  });

  it('runSync refuses a step that answers with a promise', () => {
    expect(() => runSync(add(1, Promise.resolve(2)))).toThrow(TypeError);
  });

  it('runAsync throws a rejection into the flow, where it can be caught or passes through', async () => {
    const cleanedUp: string[] = [];
    function* guarded(p: Promise<number>): Flow<number> {
      try {
        return yield* wait(p);
      } catch {
        return -1;
      } finally {
        cleanedUp.push('guarded');
      }
    }
    expect(await runAsync(guarded(Promise.reject(new Error('x'))))).toBe(-1);
    function* plain(p: Promise<number>): Flow<number> {
      try {
        return yield* wait(p);
      } finally {
        cleanedUp.push('plain');
      }
    }
    await expect(runAsync(plain(Promise.reject(new Error('boom'))))).rejects.toThrow('boom');
    expect(cleanedUp).toEqual(['guarded', 'plain']);
  });
});
