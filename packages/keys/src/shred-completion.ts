/**
 * Completing a shred (docs/key-management.md "Completing a shred"; issue 13): destroying a
 * contact's keys removes them from the live store, but a backup of the store taken earlier still
 * holds them, wrapped under the KEK of that time. So a shred is complete only once that KEK
 * generation is gone: every live key is re-wrapped under a fresh generation (one rewrap for all
 * the shreds since the last completion, not one per shred), then the old KEK is destroyed.
 *
 * Safe to interrupt and to run again: the rewrap commits in one transaction that also makes the
 * new generation current and the old one `retiring`; the KEK of a retiring generation is
 * destroyed, and the generation marked so, on this run or the next. A new generation's KEK left
 * behind by an interrupted run is reused, not duplicated.
 */
import type { KekGenerations } from './key-wrapper.ts';
import type { WrappedKeyManager } from './stores/key-store.ts';

export interface ShredCompletion {
  /** Generations whose KEK this run destroyed (empty: nothing was pending). */
  retired: number[];
  /** Keys re-wrapped under the new generation by this run. */
  rewrapped: number;
  /** The current generation afterwards. */
  generation: number;
}

/**
 * Retires the store's KEK generation when a shred tainted it, and destroys the KEK of every
 * generation already retired. Does nothing when no shred is pending.
 * @throws LatchkeyError KEY_UNAVAILABLE when the backend or store fails (run it again later:
 *   nothing is lost), CONFLICT when a rewrap is already running or the backend cannot make a
 *   new generation by itself.
 */
export async function completeShreds(
  km: WrappedKeyManager,
  generations: KekGenerations,
): Promise<ShredCompletion> {
  const before = await km.keyGeneration();
  let rewrapped = 0;
  if (before.taintedSince !== null) {
    const next = await generations.wrapper(before.generation + 1, { create: true });
    try {
      rewrapped = (await km.rewrap(next)).rewrapped;
    } catch (err) {
      await next.close();
      throw err;
    }
  }
  const after = await km.keyGeneration();
  for (const g of after.retiring) {
    await generations.destroy(g);
    await km.markDestroyed(g);
  }
  return { retired: after.retiring, rewrapped, generation: after.generation };
}

/** The contract line of a completion (README `latchkey shred --complete`). */
export function formatShredCompletion(c: ShredCompletion): string {
  if (c.retired.length === 0)
    return `shred complete: nothing to retire (key generation ${c.generation} is current)`;
  return `shred complete: key generation ${c.retired.join(', ')} retired, ${c.rewrapped} keys re-wrapped`;
}
