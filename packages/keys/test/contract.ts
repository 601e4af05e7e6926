/**
 * The KeyManager contract suite (src/key-manager.ts): every adapter runs it against a real
 * backend. A target opens independent managers over one shared backend (so concurrency is
 * tested across instances, as across key service processes) and names the files where keys
 * could land, which must never hold an unwrapped content key.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { KeyManager } from '../src/key-manager.ts';
import { bytesContain, codeOf } from './_helpers.ts';

export interface ContractTarget {
  /** A new manager over the shared backend. */
  open(): Promise<KeyManager>;
  /**
   * Every database file of the store and of the backend (for a server database: files holding
   * a dump of its tables and, when the test owns the server, its data files).
   */
  files(): string[] | Promise<string[]>;
  /** The `backend` name health() reports. */
  backend: string;
  teardown(): Promise<void>;
}

const hex = (k: Uint8Array): string => Buffer.from(k).toString('hex');

export function keyManagerContract(name: string, setup: () => Promise<ContractTarget>): void {
  describe(`KeyManager contract: ${name}`, () => {
    let target: ContractTarget;
    const open: KeyManager[] = [];
    const km = async (): Promise<KeyManager> => {
      const m = await target.open();
      open.push(m);
      return m;
    };

    beforeEach(async () => {
      target = await setup();
    });
    afterEach(async () => {
      await Promise.all(open.splice(0).map((m) => m.close()));
      await target.teardown();
    });

    it('creates epoch 0 on first use and returns the same key afterwards', async () => {
      const m = await km();
      const a = await m.getContentKey('c1');
      expect(a).toMatchObject({ contactId: 'c1', epoch: 0, currentEpoch: 0 });
      expect(a.key).toHaveLength(32);
      expect((await m.getContentKey('c1', 0)).key).toEqual(a.key);
      expect(await m.currentEpoch('c1')).toBe(0);
      expect((await m.getContentKey('c2')).key).not.toEqual(a.key);
      const again = await km();
      expect((await again.getContentKey('c1')).key).toEqual(a.key);
    });

    it('rotates to new epochs and keeps old ones readable', async () => {
      const m = await km();
      const e0 = await m.getContentKey('c1');
      expect(await m.rotate('c1')).toBe(1);
      expect(await m.rotate('c1')).toBe(2);
      const cur = await m.getContentKey('c1');
      expect(cur).toMatchObject({ epoch: 2, currentEpoch: 2 });
      const old = await m.getContentKey('c1', 0);
      expect(old).toMatchObject({ epoch: 0, currentEpoch: 2 });
      expect(old.key).toEqual(e0.key);
      const e1 = await m.getContentKey('c1', 1);
      expect(new Set([e0.key, e1.key, cur.key].map(hex)).size).toBe(3);
      expect(await codeOf(m.getContentKey('c1', 3))).toBe('NOT_FOUND');
      expect(await m.currentEpoch('c1')).toBe(2);
    });

    it('refuses unknown contacts, unknown epochs and malformed input without creating', async () => {
      const m = await km();
      expect(await codeOf(m.currentEpoch('nobody'))).toBe('NOT_FOUND');
      expect(await codeOf(m.rotate('nobody'))).toBe('NOT_FOUND');
      expect(await codeOf(m.getContentKey('nobody', 4))).toBe('NOT_FOUND');
      expect(await codeOf(m.currentEpoch('nobody'))).toBe('NOT_FOUND');
      expect(await codeOf(m.getContentKey('has space'))).toBe('BAD_REQUEST');
      expect(await codeOf(m.getContentKey('c1', -1))).toBe('BAD_REQUEST');
      expect(await codeOf(m.getContentKey('c1', 1.5))).toBe('BAD_REQUEST');
    });

    it('destroys a contact for good (every epoch, a tombstone, idempotent)', async () => {
      const m = await km();
      await m.getContentKey('c1');
      await m.rotate('c1');
      const keep = await m.getContentKey('keep');
      await m.destroy('c1');
      await m.destroy('c1');
      expect(await codeOf(m.getContentKey('c1'))).toBe('NOT_FOUND');
      expect(await codeOf(m.getContentKey('c1', 0))).toBe('NOT_FOUND');
      expect(await codeOf(m.currentEpoch('c1'))).toBe('NOT_FOUND');
      expect(await codeOf(m.rotate('c1'))).toBe('NOT_FOUND');
      expect((await m.getContentKey('keep')).key).toEqual(keep.key);
      await m.destroy('never');
      expect(await codeOf(m.getContentKey('never'))).toBe('NOT_FOUND');
      const other = await km();
      expect(await codeOf(other.getContentKey('c1'))).toBe('NOT_FOUND');
    });

    it('never writes an unwrapped key to any database file', async () => {
      const m = await km();
      const keys: Uint8Array[] = [];
      for (let i = 0; i < 12; i++) {
        keys.push((await m.getContentKey(`c${i}`)).key);
        await m.rotate(`c${i}`);
        keys.push((await m.getContentKey(`c${i}`)).key);
      }
      await m.destroy('c0');
      const files = await target.files();
      expect(files.length).toBeGreaterThan(0);
      for (const k of keys) expect(bytesContain(files, k)).toBeUndefined();
      await m.close();
      const after = await target.files();
      for (const k of keys) expect(bytesContain(after, k)).toBeUndefined();
    });

    it('gives concurrent first requests the same key, in one instance and across two', async () => {
      const a = await km();
      const b = await km();
      const same = await Promise.all(Array.from({ length: 16 }, () => a.getContentKey('c1')));
      for (const r of same) expect(r.key).toEqual(same[0]?.key);
      const mixed = await Promise.all(
        Array.from({ length: 16 }, (_, i) => (i % 2 ? a : b).getContentKey('c2')),
      );
      for (const r of mixed) expect(r).toMatchObject({ epoch: 0, key: mixed[0]?.key });
    });

    it('gives concurrent rotations distinct epochs', async () => {
      const a = await km();
      const b = await km();
      await a.getContentKey('c1');
      const epochs = await Promise.all(
        Array.from({ length: 6 }, (_, i) => (i % 2 ? a : b).rotate('c1')),
      );
      expect([...epochs].sort((x, y) => x - y)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(await a.currentEpoch('c1')).toBe(6);
      for (let e = 0; e <= 6; e++) expect((await b.getContentKey('c1', e)).epoch).toBe(e);
    });

    it('reports health and refuses use after close', async () => {
      const m = await km();
      expect(await m.health()).toMatchObject({ status: 'ok', backend: target.backend });
      await m.close();
      await m.close();
      expect((await m.health()).status).toBe('degraded');
      expect(await codeOf(m.getContentKey('c1'))).toBe('KEY_UNAVAILABLE');
    });
  });
}
