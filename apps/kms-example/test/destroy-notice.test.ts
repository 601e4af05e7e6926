/**
 * Shreds in the wrap model reach the key manager (docs/key-management.md "Which calls each
 * action makes"): `POST /v1/keys/{keyId}/destroy` with reason `destroy`, owed durably while the
 * key manager is down and sent once it is back, also after a restart. The attack it stops: an
 * insider who copied the wrapped keys before the shred asks the key manager to unwrap them.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { createHttpWrapper, openHttpKeyManager, type WrappedKeyManager } from '@latchkey/keys';
import { LatchkeyError } from '@latchkey/protocol';
import { clientOptions, withKms, type Env } from './_setup.ts';
import { startFaultProxy, type FaultProxy } from './_fault-proxy.ts';

let env: Env;
let proxy: FaultProxy;
const closers: (() => Promise<void>)[] = [];

beforeEach(async () => {
  env = await withKms();
  proxy = await startFaultProxy(env.kms.url);
});
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
  await proxy.close();
  await env.cleanup();
});

const path = (): string => join(env.dir, 'keys.db');

async function openKm(): Promise<WrappedKeyManager> {
  const km = await openHttpKeyManager({
    ...clientOptions(proxy.url, { retries: 0, breakerThreshold: 1000 }),
    keyId: 'kek',
    path: path(),
  });
  closers.push(() => km.close());
  return km;
}

/** The wrapped keys of `contactId` as a copy of the database holds them. */
function wrappedRows(file: string, contactId: string): { epoch: number; wrapped: Uint8Array }[] {
  const db = new Database(file, { readonly: true });
  try {
    return db
      .prepare<[string], { epoch: number; wrapped: Uint8Array }>(
        'SELECT epoch, wrapped FROM content_keys WHERE contact_id = ? ORDER BY epoch',
      )
      .all(contactId);
  } finally {
    db.close();
  }
}

/** An insider's unwrap of a wrapped key from a copy: the key, or the refusal's code. */
async function insiderUnwrap(contactId: string, epoch: number, wrapped: Uint8Array) {
  const w = createHttpWrapper({ ...clientOptions(env.kms.url, { retries: 0 }), keyId: 'kek' });
  try {
    return await w.unwrap(wrapped, { contactId, epoch, reason: 'fetch' });
  } catch (err) {
    return LatchkeyError.is(err) ? (err.detail ?? err.code) : String(err);
  } finally {
    await w.close();
  }
}

it('a shred tells the key manager, which then refuses a copy of the wrapped keys', async () => {
  const km = await openKm();
  const k0 = (await km.getContentKey('c1')).key;
  await km.rotate('c1');
  await km.getContentKey('keep');
  // The insider's copy, taken before the shred.
  const copy = join(env.dir, 'stolen.db');
  const live = new Database(path(), { readonly: true });
  live.exec(`VACUUM INTO '${copy}'`);
  live.close();
  const rows = wrappedRows(copy, 'c1');
  expect(rows).toHaveLength(2);
  expect(await insiderUnwrap('c1', 0, rows[0]?.wrapped ?? new Uint8Array())).toEqual(k0);

  await km.destroy('c1');
  await km.flushDestroyNotices();
  expect(await km.owedDestroyNotices()).toEqual([]);
  const notices = env.kms.audit().filter((a) => a.operation === 'destroy');
  expect(notices.map((a) => [a.contactId, a.reason])).toEqual([['c1', 'destroy']]);
  for (const r of rows) expect(await insiderUnwrap('c1', r.epoch, r.wrapped)).toMatch(/FORBIDDEN/);
  // Other contacts are untouched; a repeated shred sends nothing more.
  expect((await km.getContentKey('keep')).epoch).toBe(0);
  await km.destroy('c1');
  await km.flushDestroyNotices();
  expect(env.kms.audit().filter((a) => a.operation === 'destroy')).toHaveLength(1);
});

it('a shred while the key manager is down is owed, survives a restart and is sent when it is back', async () => {
  let km = await openKm();
  await km.getContentKey('c2');
  const wrapped = wrappedRows(path(), 'c2')[0]?.wrapped ?? new Uint8Array();
  await proxy.down();
  // The shred itself does not wait for the key manager: the keys are gone here at once.
  await km.destroy('c2');
  expect(LatchkeyError.is(await km.getContentKey('c2').catch((e: unknown) => e), 'NOT_FOUND')).toBe(
    true,
  );
  await km.flushDestroyNotices();
  expect(await km.owedDestroyNotices()).toEqual(['c2']);
  // The key service stops before the key manager is back.
  await km.close();
  closers.splice(0);
  await proxy.up();
  km = await openKm();
  await km.flushDestroyNotices();
  expect(await km.owedDestroyNotices()).toEqual([]);
  expect(
    env.kms
      .audit()
      .filter((a) => a.operation === 'destroy')
      .map((a) => a.contactId),
  ).toEqual(['c2']);
  expect(await insiderUnwrap('c2', 0, wrapped)).toMatch(/FORBIDDEN/);
});

it('a key manager without destroy (404) settles the notice instead of asking for ever', async () => {
  const km = await openKm();
  await km.getContentKey('c3');
  proxy.mode = 'not-found';
  await km.destroy('c3');
  await km.flushDestroyNotices();
  expect(await km.owedDestroyNotices()).toEqual([]);
});
