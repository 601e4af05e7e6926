import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { deriveKek, unwrapContentKey } from '@latchkey/crypto/wrap';
import { codeOf, tempDir } from '../_helpers.ts';
import {
  createInternalWrapper,
  openInternalKeyManager,
  rewrapInternalKeyStore,
} from '../../src/wrappers/internal.ts';

const oldMaster = new Uint8Array(32).fill(1);
const newMaster = new Uint8Array(32).fill(2);
const hex = (k: Uint8Array): string => Buffer.from(k).toString('hex');

let dir: string;
let cleanup: () => void;
let path: string;

beforeEach(() => {
  ({ dir, cleanup } = tempDir());
  path = join(dir, 'keys', 'keys.db');
});
afterEach(() => cleanup());

function storedBlobs(): { contact_id: string; epoch: number; wrapped: Uint8Array }[] {
  const raw = new Database(path, { readonly: true });
  const rows = raw
    .prepare<[], { contact_id: string; epoch: number; wrapped: Uint8Array }>(
      'SELECT contact_id, epoch, wrapped FROM content_keys',
    )
    .all();
  raw.close();
  return rows;
}

describe('master-key rotation (rewrap)', () => {
  it('re-wraps every key online: all stay readable, the old KEK no longer works', async () => {
    const km = await openInternalKeyManager({ path, masterKey: oldMaster });
    const before = new Map<string, string>();
    for (let i = 0; i < 10; i++) {
      for (let e = 0; e < 3; e++) {
        if (e > 0) await km.rotate(`c${i}`);
        const k = await km.getContentKey(`c${i}`);
        before.set(`c${i}/${k.epoch}`, hex(k.key));
      }
    }
    await km.destroy('c9');
    for (let e = 0; e < 3; e++) before.delete(`c9/${e}`);
    const oldBlobs = storedBlobs();

    // Readers and writers keep going while the rewrap runs.
    const reads = Promise.all(
      Array.from({ length: 30 }, (_, i) => km.getContentKey(`c${i % 9}`, i % 3)),
    );
    const writes = Promise.all([km.getContentKey('fresh'), km.rotate('c0')]);
    const { rewrapped } = await km.rewrap(createInternalWrapper(newMaster));
    for (const k of await reads) expect(hex(k.key)).toBe(before.get(`${k.contactId}/${k.epoch}`));
    expect((await writes)[1]).toBe(3);
    expect(rewrapped).toBeGreaterThanOrEqual(27);
    for (const [id, k] of before) {
      const [c, e] = id.split('/');
      expect(hex((await km.getContentKey(c ?? '', Number(e))).key)).toBe(k);
    }
    const fresh = await km.getContentKey('fresh');
    const c0e3 = await km.getContentKey('c0', 3);
    await km.close();

    // Every stored blob changed and none opens under the old KEK any more.
    const oldKek = deriveKek(oldMaster);
    const newKek = deriveKek(newMaster);
    const now = storedBlobs();
    expect(now.length).toBe(rewrapped);
    const oldSet = new Set(oldBlobs.map((r) => hex(r.wrapped)));
    for (const r of now) {
      expect(oldSet.has(hex(r.wrapped))).toBe(false);
      await expect(
        unwrapContentKey(oldKek, r.wrapped, { contactId: r.contact_id, epoch: r.epoch }),
      ).rejects.toThrow();
      (await unwrapContentKey(newKek, r.wrapped, { contactId: r.contact_id, epoch: r.epoch })).fill(
        0,
      );
    }

    expect(await codeOf(openInternalKeyManager({ path, masterKey: oldMaster }))).toBe(
      'KEY_UNAVAILABLE',
    );
    const again = await openInternalKeyManager({ path, masterKey: newMaster });
    for (const [id, k] of before) {
      const [c, e] = id.split('/');
      expect(hex((await again.getContentKey(c ?? '', Number(e))).key)).toBe(k);
    }
    expect((await again.getContentKey('fresh')).key).toEqual(fresh.key);
    expect((await again.getContentKey('c0', 3)).key).toEqual(c0e3.key);
    expect(await codeOf(again.getContentKey('c9'))).toBe('NOT_FOUND');
    await again.close();
  });

  it('rotates a stopped store with rewrapInternalKeyStore, and changes nothing on a wrong key', async () => {
    const km = await openInternalKeyManager({ path, masterKey: oldMaster });
    const a = await km.getContentKey('c1');
    await km.close();
    const wrong = new Uint8Array(32).fill(9);
    expect(
      await codeOf(rewrapInternalKeyStore({ path, masterKey: wrong, newMasterKey: newMaster })),
    ).toBe('KEY_UNAVAILABLE');
    const blobs = storedBlobs().map((r) => hex(r.wrapped));
    expect(
      await rewrapInternalKeyStore({ path, masterKey: oldMaster, newMasterKey: newMaster }),
    ).toEqual({ rewrapped: 1 });
    expect(storedBlobs().map((r) => hex(r.wrapped))).not.toEqual(blobs);
    const again = await openInternalKeyManager({ path, masterKey: newMaster });
    expect((await again.getContentKey('c1')).key).toEqual(a.key);
    await again.close();
  });

  it('leaves the store untouched when the new wrapper fails', async () => {
    const km = await openInternalKeyManager({ path, masterKey: oldMaster });
    const a = await km.getContentKey('c1');
    const broken = createInternalWrapper(newMaster);
    broken.wrap = async () => {
      throw new Error('HSM on fire');
    };
    expect(await codeOf(km.rewrap(broken))).toBe('KEY_UNAVAILABLE');
    expect((await km.getContentKey('c1')).key).toEqual(a.key);
    await km.close();
    const again = await openInternalKeyManager({ path, masterKey: oldMaster });
    expect((await again.getContentKey('c1')).key).toEqual(a.key);
    await again.close();
  });
});
