/**
 * The rotation a kick or transfer owes (issue 14: an admin action is never half-applied), on a
 * real access table file with a key manager that fails on demand: recorded with the membership
 * change, pending while the key manager is down, completed by the sweep, kept across a reopen,
 * not settled by a rotation that began before a later removal, and not repeated by a re-run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteAccessStore, type KeyManager } from '@latchkey/keys';
import { LatchkeyError } from '@latchkey/protocol';
import { KeyPolicy, settleOwed } from '../src/key-policy.ts';
import { startKeySweep } from '../src/key-sweep.ts';

let dir: string;
let access: SqliteAccessStore;

/** A key manager whose rotate fails while `down`; epochs count from 0 per contact. */
function flakyKeyManager(): KeyManager & { down: boolean; rotations: number } {
  const epochs = new Map<string, number>([['c1', 0]]);
  const km = {
    down: false,
    rotations: 0,
    async rotate(id: string): Promise<number> {
      if (km.down) throw new Error('connect ECONNREFUSED');
      const e = epochs.get(id);
      if (e === undefined) throw new LatchkeyError('NOT_FOUND', 'no such contact');
      km.rotations++;
      epochs.set(id, e + 1);
      return e + 1;
    },
    async destroy(id: string): Promise<void> {
      if (km.down) throw new Error('connect ECONNREFUSED');
      epochs.delete(id);
    },
    async currentEpoch(id: string): Promise<number> {
      const e = epochs.get(id);
      if (e === undefined) throw new LatchkeyError('NOT_FOUND', 'no such contact');
      return e;
    },
  };
  return km as unknown as KeyManager & { down: boolean; rotations: number };
}

const open = (): SqliteAccessStore =>
  (access = new SqliteAccessStore({ path: join(dir, 'access.db') }));

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'latchkey-owed-'));
  open();
});

afterEach(() => {
  access.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('owed rotations', () => {
  it('a transfer with the key manager down: leaver refused, rotation pending, kept across a reopen, done by the sweep, not repeated', async () => {
    const km = flakyKeyManager();
    access.invite('c1', 'a', 'agent', 1);
    access.transfer('c1', 'a', 'b', 2, { oweRotation: true });
    km.down = true;
    let policy = new KeyPolicy({ keyManager: km, access });
    const r = await policy.settle('c1');
    expect(r.pending).toBe(true);
    const refused = (): unknown => {
      try {
        return access.admit({ contactId: 'c1', participantId: 'a', role: 'agent' }, 3);
      } catch (err) {
        return err;
      }
    };
    expect(LatchkeyError.is(refused(), 'FORBIDDEN')).toBe(true);
    expect(access.owedRotation('c1')).toMatchObject({
      action: 'transfer',
      participantId: 'a',
      state: 'owed',
      attempts: 1,
    });
    expect(access.owedRotation('c1')?.lastError).toMatch(/^KEY_UNAVAILABLE/);
    // The record is durable: a restart finds it.
    access.close();
    open();
    policy = new KeyPolicy({ keyManager: km, access });
    expect(access.owedRotations().map((o) => o.contactId)).toEqual(['c1']);
    km.down = false;
    const sweep = startKeySweep({ access, policy, everyMs: 60_000, retryEveryMs: 60_000 });
    try {
      // The first round runs at start; a second round has nothing left to do.
      await new Promise((r) => setTimeout(r, 50));
      expect(await sweep.settleOwed()).toEqual([]);
    } finally {
      sweep.stop();
    }
    expect(km.rotations).toBe(1);
    expect(access.owedRotation('c1')).toMatchObject({ state: 'done', epoch: 1 });
    // Re-running the transfer (the relay missed it): nothing new owed, the epoch reported.
    access.transfer('c1', 'a', 'b', 5, { oweRotation: true });
    expect(await policy.settle('c1')).toEqual({ pending: false, epoch: 1 });
    expect(km.rotations).toBe(1);
  });

  it('a rotation begun before a later kick does not settle the kick', async () => {
    const km = flakyKeyManager();
    access.kick('c1', 'a', 1, { oweRotation: true });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const first = settleOwed(access, 'c1', async (id) => {
      await gate;
      return km.rotate(id);
    });
    // While that rotation runs, another participant is kicked.
    access.kick('c1', 'b', 2, { oweRotation: true });
    release();
    expect(await first).toEqual({ pending: false, epoch: 1 });
    expect(access.owedRotation('c1')).toMatchObject({ state: 'owed', participantId: 'b', seq: 2 });
    expect(await settleOwed(access, 'c1', (id) => km.rotate(id))).toEqual({
      pending: false,
      epoch: 2,
    });
    expect(access.owedRotation('c1')?.state).toBe('done');
  });

  it('a contact without a key has nothing to rotate; a kick of someone already kicked owes nothing', async () => {
    const km = flakyKeyManager();
    const policy = new KeyPolicy({ keyManager: km, access });
    access.kick('c2', 'a', 1, { oweRotation: true });
    expect(await policy.settle('c2')).toEqual({ pending: false, epoch: undefined });
    expect(access.owedRotation('c2')).toMatchObject({ state: 'done', epoch: null });
    access.kick('c2', 'a', 2, { oweRotation: true });
    expect(access.owedRotations()).toEqual([]);
  });

  it('a shred with the key manager down refuses the contact at once; a retry destroys the keys', async () => {
    const km = flakyKeyManager();
    const now = Date.now();
    access.invite('c1', 'a', 'agent', now);
    const policy = new KeyPolicy({ keyManager: km, access });
    km.down = true;
    await expect(policy.shred('c1')).rejects.toMatchObject({ code: 'KEY_UNAVAILABLE' });
    // Refused already, although its keys are still in the key manager.
    expect(() =>
      access.admit({ contactId: 'c1', participantId: 'a', role: 'agent' }, Date.now()),
    ).toThrow(expect.objectContaining({ code: 'CONTACT_EXPIRED' }));
    expect(await km.currentEpoch('c1')).toBe(0);
    km.down = false;
    await policy.shred('c1');
    await expect(km.currentEpoch('c1')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});
