import { statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { KeyManager } from '../../src/key-manager.ts';
import { bytesContain, codeOf, dbFiles, tempDir } from '../_helpers.ts';
import { openInternalKeyManager } from '../../src/wrappers/internal.ts';

const master = new Uint8Array(32).fill(1);
const otherMaster = new Uint8Array(32).fill(2);

let dir: string;
let cleanup: () => void;
let path: string;
const open: KeyManager[] = [];

async function openKm(masterKey = master, p = path): Promise<KeyManager> {
  const km = await openInternalKeyManager({ path: p, masterKey });
  open.push(km);
  return km;
}

beforeEach(() => {
  ({ dir, cleanup } = tempDir());
  path = join(dir, 'keys', 'keys.db');
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((km) => km.close()));
  cleanup();
});

describe('internal key manager', () => {
  it('creates epoch 0 on first use and returns the same key afterwards', async () => {
    const km = await openKm();
    const a = await km.getContentKey('c1');
    expect(a).toMatchObject({ contactId: 'c1', epoch: 0, currentEpoch: 0 });
    expect(a.key).toHaveLength(32);
    const b = await km.getContentKey('c1', 0);
    expect(b.key).toEqual(a.key);
    expect(await km.currentEpoch('c1')).toBe(0);
    const other = await km.getContentKey('c2');
    expect(other.key).not.toEqual(a.key);
  });

  it('rotates to new epochs and keeps old ones readable', async () => {
    const km = await openKm();
    const e0 = await km.getContentKey('c1');
    expect(await km.rotate('c1')).toBe(1);
    expect(await km.rotate('c1')).toBe(2);
    const cur = await km.getContentKey('c1');
    expect(cur).toMatchObject({ epoch: 2, currentEpoch: 2 });
    const old = await km.getContentKey('c1', 0);
    expect(old).toMatchObject({ epoch: 0, currentEpoch: 2 });
    expect(old.key).toEqual(e0.key);
    const e1 = await km.getContentKey('c1', 1);
    expect(new Set([e0.key, e1.key, cur.key].map((k) => Buffer.from(k).toString('hex'))).size).toBe(
      3,
    );
    expect(await codeOf(km.getContentKey('c1', 3))).toBe('NOT_FOUND');
    expect(await km.currentEpoch('c1')).toBe(2);
  });

  it('refuses unknown contacts, unknown epochs and malformed input', async () => {
    const km = await openKm();
    expect(await codeOf(km.currentEpoch('nobody'))).toBe('NOT_FOUND');
    expect(await codeOf(km.rotate('nobody'))).toBe('NOT_FOUND');
    expect(await codeOf(km.getContentKey('nobody', 4))).toBe('NOT_FOUND');
    // The failed lookup did not create the contact.
    expect(await codeOf(km.currentEpoch('nobody'))).toBe('NOT_FOUND');
    expect(await codeOf(km.getContentKey('has space'))).toBe('BAD_REQUEST');
    expect(await codeOf(km.getContentKey('c1', -1))).toBe('BAD_REQUEST');
    expect(await codeOf(km.getContentKey('c1', 1.5))).toBe('BAD_REQUEST');
  });

  it('destroys a contact for good (crypto-shredding with a tombstone)', async () => {
    const km = await openKm();
    await km.getContentKey('c1');
    await km.rotate('c1');
    await km.getContentKey('keep');
    // Read the wrapped blobs directly, to prove they are gone from every file afterwards.
    const raw = new Database(path, { readonly: true });
    const wrapped = raw
      .prepare<[], { wrapped: Uint8Array }>(
        "SELECT wrapped FROM content_keys WHERE contact_id = 'c1'",
      )
      .all()
      .map((r) => r.wrapped);
    raw.close();
    expect(wrapped).toHaveLength(2);

    await km.destroy('c1');
    await km.destroy('c1'); // idempotent
    expect(await codeOf(km.getContentKey('c1'))).toBe('NOT_FOUND');
    expect(await codeOf(km.getContentKey('c1', 0))).toBe('NOT_FOUND');
    expect(await codeOf(km.currentEpoch('c1'))).toBe('NOT_FOUND');
    expect(await codeOf(km.rotate('c1'))).toBe('NOT_FOUND');
    expect((await km.getContentKey('keep')).epoch).toBe(0);
    for (const w of wrapped) expect(bytesContain(dbFiles(path), w)).toBeUndefined();

    // A contact destroyed before it ever had a key is never created later either.
    await km.destroy('never');
    expect(await codeOf(km.getContentKey('never'))).toBe('NOT_FOUND');

    await km.close();
    const again = await openKm();
    expect(await codeOf(again.getContentKey('c1'))).toBe('NOT_FOUND');
    for (const w of wrapped) expect(bytesContain(dbFiles(path), w)).toBeUndefined();
  });

  it('keeps keys across reopen', async () => {
    const km = await openKm();
    const a = await km.getContentKey('c1');
    await km.rotate('c1');
    const b = await km.getContentKey('c1');
    await km.close();
    const again = await openKm();
    expect((await again.getContentKey('c1', 0)).key).toEqual(a.key);
    expect((await again.getContentKey('c1')).key).toEqual(b.key);
    expect(await again.currentEpoch('c1')).toBe(1);
  });

  it('refuses a wrong master key with a clear KEY_UNAVAILABLE', async () => {
    const km = await openKm();
    await km.getContentKey('c1');
    await km.close();
    const err = await openInternalKeyManager({ path, masterKey: otherMaster }).catch(
      (e: unknown) => e,
    );
    expect(err).toMatchObject({
      code: 'KEY_UNAVAILABLE',
      message: 'the master key does not match this key database',
    });
    await expect(openInternalKeyManager({ path, masterKey: new Uint8Array(16) })).rejects.toThrow(
      RangeError,
    );
  });

  it('reports KEY_UNAVAILABLE when a stored key was moved to another contact', async () => {
    const km = await openKm();
    await km.getContentKey('c1');
    await km.getContentKey('c2');
    const raw = new Database(path);
    raw.exec(
      "UPDATE content_keys SET wrapped = (SELECT wrapped FROM content_keys WHERE contact_id = 'c1') WHERE contact_id = 'c2'",
    );
    raw.close();
    expect(await codeOf(km.getContentKey('c2'))).toBe('KEY_UNAVAILABLE');
    expect(await codeOf(km.getContentKey('c1'))).toBe('OK');
  });

  it('never writes an unwrapped key to disk, and keeps its files private', async () => {
    const km = await openKm();
    const keys: Uint8Array[] = [];
    for (let i = 0; i < 20; i++) {
      keys.push((await km.getContentKey(`c${i}`)).key);
      await km.rotate(`c${i}`);
      keys.push((await km.getContentKey(`c${i}`)).key);
    }
    await km.destroy('c0');
    const files = dbFiles(path);
    expect(files.some((f) => f.endsWith('-wal'))).toBe(true);
    for (const k of keys) expect(bytesContain(files, k)).toBeUndefined();
    if (process.platform !== 'win32') {
      for (const f of files) expect(statSync(f).mode & 0o777).toBe(0o600);
      expect(statSync(join(dir, 'keys')).mode & 0o777).toBe(0o700);
    }
    await km.close();
    for (const k of keys) expect(bytesContain(dbFiles(path), k)).toBeUndefined();
  });

  it('gives concurrent first requests the same key, in one process and across connections', async () => {
    const km = await openKm();
    const same = await Promise.all(Array.from({ length: 20 }, () => km.getContentKey('c1')));
    for (const r of same) expect(r.key).toEqual(same[0]?.key);

    const km2 = await openKm();
    const mixed = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? km : km2).getContentKey('c2')),
    );
    for (const r of mixed) expect(r).toMatchObject({ epoch: 0, key: mixed[0]?.key });
  });

  it('gives concurrent rotations distinct epochs', async () => {
    const km = await openKm();
    const km2 = await openKm();
    await km.getContentKey('c1');
    const epochs = await Promise.all(
      Array.from({ length: 6 }, (_, i) => (i % 2 ? km : km2).rotate('c1')),
    );
    expect([...epochs].sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(await km.currentEpoch('c1')).toBe(6);
    for (let e = 0; e <= 6; e++) expect((await km2.getContentKey('c1', e)).epoch).toBe(e);
  });

  it('reports health and refuses use after close', async () => {
    const km = await openKm();
    expect(await km.health()).toEqual({ status: 'ok', backend: 'internal' });
    await km.close();
    await km.close();
    expect((await km.health()).status).toBe('degraded');
    expect(await codeOf(km.getContentKey('c1'))).toBe('KEY_UNAVAILABLE');
  });

  it('records the schema version and refuses a newer one', async () => {
    const km = await openKm();
    await km.close();
    const raw = new Database(path);
    expect(raw.pragma('user_version', { simple: true })).toBe(3);
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    raw.pragma('user_version = 99');
    raw.close();
    expect(await codeOf(openInternalKeyManager({ path, masterKey: master }))).toBe(
      'KEY_UNAVAILABLE',
    );
  });
});
