/** Moving every wrapped key to another enterprise KEK online (WrappedKeyManager.rewrap). */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { AuthenticationError } from '@latchkey/crypto/aead';
import { createHttpWrapper, openHttpKeyManager } from '@latchkey/keys';
import { clientOptions, withKms, type Env } from './_setup.ts';

let env: Env;
beforeEach(async () => {
  env = await withKms();
});
afterEach(async () => {
  await env.cleanup();
});

it('re-wraps every key under another KEK of the key manager; the old KEK opens none of them', async () => {
  const path = join(env.dir, 'keys.db');
  const km = await openHttpKeyManager({ ...clientOptions(env.kms.url), keyId: 'kek-2024', path });
  const keys = new Map<string, Uint8Array>();
  for (let i = 0; i < 4; i++) {
    keys.set(`c${i}/0`, (await km.getContentKey(`c${i}`)).key);
    await km.rotate(`c${i}`);
    keys.set(`c${i}/1`, (await km.getContentKey(`c${i}`)).key);
  }
  expect(
    await km.rewrap(createHttpWrapper({ ...clientOptions(env.kms.url), keyId: 'kek-2025' })),
  ).toEqual({ rewrapped: 8 });
  for (const [id, k] of keys) {
    const [c, e] = id.split('/');
    expect((await km.getContentKey(c ?? '', Number(e))).key).toEqual(k);
  }
  await km.close();

  const old = createHttpWrapper({ ...clientOptions(env.kms.url), keyId: 'kek-2024' });
  const raw = new Database(path, { readonly: true });
  const rows = raw
    .prepare<[], { contact_id: string; epoch: number; wrapped: Uint8Array }>(
      'SELECT contact_id, epoch, wrapped FROM content_keys',
    )
    .all();
  raw.close();
  expect(rows).toHaveLength(8);
  for (const r of rows) {
    await expect(
      old.unwrap(r.wrapped, { contactId: r.contact_id, epoch: r.epoch, reason: 'fetch' }),
    ).rejects.toThrow(AuthenticationError);
  }
  await old.close();
  const audit = env.kms.audit();
  expect(audit.filter((a) => a.reason === 'rewrap' && a.operation === 'unwrap')).toHaveLength(8);
  expect(audit.filter((a) => a.reason === 'rewrap' && a.operation === 'wrap')).toHaveLength(8);
});

it('re-wraps in place after the enterprise rotated its KEK: the keys never leave the key manager', async () => {
  const path = join(env.dir, 'keys.db');
  const km = await openHttpKeyManager({ ...clientOptions(env.kms.url), keyId: 'kek', path });
  const keys = new Map<string, Uint8Array>();
  for (let i = 0; i < 3; i++) {
    keys.set(`c${i}/0`, (await km.getContentKey(`c${i}`)).key);
    await km.rotate(`c${i}`);
    keys.set(`c${i}/1`, (await km.getContentKey(`c${i}`)).key);
  }
  const versions = (): number[] => {
    const raw = new Database(path, { readonly: true });
    const rows = raw.prepare<[], { wrapped: Uint8Array }>('SELECT wrapped FROM content_keys').all();
    raw.close();
    // The reference's wrapped form: 0x01 || u32 KEK version || AES-GCM.
    return rows.map((r) => Buffer.from(r.wrapped).readUInt32BE(1));
  };
  expect(new Set(versions())).toEqual(new Set([1]));
  env.kms.rotateKey('kek');
  const before = env.kms.audit().length;
  expect(await km.rewrap(km.currentWrapper)).toEqual({ rewrapped: 6 });
  expect(new Set(versions())).toEqual(new Set([2]));
  for (const [id, k] of keys) {
    const [c, e] = id.split('/');
    expect((await km.getContentKey(c ?? '', Number(e))).key).toEqual(k);
  }
  const during = env.kms.audit().slice(before, before + 6);
  expect(during.map((a) => [a.operation, a.reason])).toEqual(
    Array.from({ length: 6 }, () => ['rewrap', 'rewrap']),
  );
  await km.close();
});
