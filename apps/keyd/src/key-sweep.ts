/**
 * The key service's background sweep (key-policy.ts; docs/key-management.md "Crypto-shredding",
 * docs/admin-api.md "Flow"): contacts past their expiry are shredded, and the rotations owed by
 * kicks and transfers are completed at start-up and retried every few seconds while the key
 * manager is down, so an admin action is never left half-applied.
 */
import type { AccessTable } from '@latchkey/keys';
import type { LatchkeyError } from '@latchkey/protocol';
import { asKeyError, type KeyPolicy } from './key-policy.ts';

/** How often rotations owed by kicks and transfers are retried while the key manager is down. */
export const OWED_ROTATION_RETRY_MS = 5_000;

/**
 * Key retention: every `everyMs`, contacts past their expiry in the membership table are
 * shredded (keys destroyed). A failed destroy (key manager down) is retried on the next round.
 * Rotations owed by kicks and transfers are completed at once (start-up: a crash between the
 * membership change and the rotation) and then every `retryEveryMs` while any is owed.
 * Returns a stop function; `sweep()` runs one round now, `settleOwed()` one retry round
 * (the contacts whose rotation it completed).
 */
export function startKeySweep(opts: {
  access: AccessTable;
  policy: KeyPolicy;
  everyMs: number;
  retryEveryMs?: number;
  onError?: (contactId: string, err: LatchkeyError) => void;
}): { stop(): void; sweep(): Promise<string[]>; settleOwed(): Promise<string[]> } {
  let settling: Promise<string[]> | undefined;
  const settleAll = (): Promise<string[]> =>
    (settling ??= (async () => {
      const done: string[] = [];
      let owed;
      try {
        owed = await opts.access.owedRotations();
      } catch {
        return done; // Access table unavailable: next round.
      }
      for (const o of owed) {
        const r = await opts.policy.settle(o.contactId);
        if (r.pending) opts.onError?.(o.contactId, r.error);
        else done.push(o.contactId);
      }
      return done;
    })().finally(() => {
      settling = undefined;
    }));
  void settleAll();
  const retry = setInterval(() => void settleAll(), opts.retryEveryMs ?? OWED_ROTATION_RETRY_MS);
  retry.unref();
  const expiry = startExpirySweep(opts);
  return {
    stop: () => {
      clearInterval(retry);
      expiry.stop();
    },
    sweep: expiry.sweep,
    settleOwed: settleAll,
  };
}

function startExpirySweep(opts: {
  access: AccessTable;
  policy: KeyPolicy;
  everyMs: number;
  onError?: (contactId: string, err: LatchkeyError) => void;
}): { stop(): void; sweep(): Promise<string[]> } {
  const retry = new Set<string>();
  let running: Promise<string[]> | undefined;
  const sweep = (): Promise<string[]> =>
    (running ??= (async () => {
      const done: string[] = [];
      try {
        for (const id of await opts.access.expireDue(Date.now())) retry.add(id);
      } catch {
        // Membership table unavailable: try again next round.
      }
      for (const id of [...retry]) {
        try {
          await opts.policy.shred(id, 'retention');
          retry.delete(id);
          done.push(id);
        } catch (err) {
          opts.onError?.(id, asKeyError(err));
        }
      }
      return done;
    })().finally(() => {
      running = undefined;
    }));
  const timer = setInterval(() => void sweep(), opts.everyMs);
  timer.unref();
  return { stop: () => clearInterval(timer), sweep };
}
