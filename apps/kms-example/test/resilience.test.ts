/**
 * The HTTP adapter when the enterprise's key manager is down, slow or answers garbage: typed
 * KEY_UNAVAILABLE errors, bounded retries, a circuit breaker, nothing lost, recovery.
 */
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LatchkeyError } from '@latchkey/protocol';
import { codeOf } from '../../../packages/keys/test/_helpers.ts';
import {
  openHttpKeyManager,
  openHttpKeyStoreManager,
  type WrappedKeyManager,
} from '@latchkey/keys';
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

async function openKm(
  over: Parameters<typeof openHttpKeyManager>[0] extends infer T ? Partial<T> : never = {},
): Promise<WrappedKeyManager> {
  const km = await openHttpKeyManager({
    ...clientOptions(proxy.url),
    keyId: 'kek',
    path: join(env.dir, 'keys.db'),
    ...over,
  });
  closers.push(() => km.close());
  return km;
}

async function errorOf(p: Promise<unknown>): Promise<LatchkeyError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!LatchkeyError.is(e)) throw new Error(`expected a LatchkeyError, got ${String(e)}`);
  return e;
}

describe('HTTP adapter resilience', () => {
  it('down: KEY_UNAVAILABLE after bounded retries, nothing lost, recovery when it is back', async () => {
    const km = await openKm({ breakerThreshold: 100 });
    const before = await km.getContentKey('c1');
    await proxy.down();
    const e = await errorOf(km.getContentKey('c1'));
    expect(e.code).toBe('KEY_UNAVAILABLE');
    expect(e.detail).toMatch(/ECONNREFUSED/);
    // A rotation during the outage adds no epoch; a new contact is not half-created.
    expect(await codeOf(km.rotate('c1'))).toBe('KEY_UNAVAILABLE');
    expect(await codeOf(km.getContentKey('c2'))).toBe('KEY_UNAVAILABLE');
    expect(await km.currentEpoch('c1')).toBe(0);
    expect(await codeOf(km.currentEpoch('c2'))).toBe('NOT_FOUND');
    expect((await km.health()).status).toBe('degraded');
    await proxy.up();
    expect((await km.getContentKey('c1')).key).toEqual(before.key);
    expect(await km.rotate('c1')).toBe(1);
    expect((await km.getContentKey('c2')).epoch).toBe(0);
    expect((await km.health()).status).toBe('ok');
  });

  it('retries a dropped connection transparently', async () => {
    const km = await openKm();
    await km.getContentKey('c1');
    proxy.mode = 'reset';
    const failing = km.getContentKey('c1');
    setTimeout(() => (proxy.mode = 'pass'), 5);
    // Either the retry got through, or all attempts hit the reset: never anything but these.
    expect(['OK', 'KEY_UNAVAILABLE']).toContain(await codeOf(failing));
    proxy.hits = 0;
    proxy.mode = 'error500';
    expect(await codeOf(km.getContentKey('c1'))).toBe('KEY_UNAVAILABLE');
    expect(proxy.hits).toBe(3); // 1 attempt + 2 retries, then it gives up
    proxy.mode = 'pass';
    expect(await codeOf(km.getContentKey('c1'))).toBe('OK');
  });

  it('slow: times out per attempt with KEY_UNAVAILABLE', async () => {
    const km = await openKm({ timeoutMs: 150, retries: 1 });
    await km.getContentKey('c1');
    proxy.mode = 'slow';
    const t0 = Date.now();
    const e = await errorOf(km.getContentKey('c1'));
    expect(e.code).toBe('KEY_UNAVAILABLE');
    expect(e.detail).toMatch(/timeout after 150 ms/);
    expect(Date.now() - t0).toBeLessThan(2000);
    proxy.mode = 'pass';
    expect(await codeOf(km.getContentKey('c1'))).toBe('OK');
  });

  it('garbage: a malformed or non-JSON answer is KEY_UNAVAILABLE, never a wrong key', async () => {
    const km = await openKm({ breakerThreshold: 100 });
    const good = await km.getContentKey('c1');
    for (const mode of ['garbage', 'bad-json'] as const) {
      proxy.mode = mode;
      const e = await errorOf(km.getContentKey('c1'));
      expect(e.code).toBe('KEY_UNAVAILABLE');
      expect(e.detail).toMatch(/malformed body|not JSON/);
    }
    proxy.mode = 'pass';
    expect((await km.getContentKey('c1')).key).toEqual(good.key);
  });

  it('opens the circuit after repeated failures, fails fast, and closes it after a good probe', async () => {
    let now = 1_000_000;
    const km = await openKm({
      retries: 0,
      breakerThreshold: 3,
      breakerCooldownMs: 5_000,
      now: () => now,
    });
    const wrapperState = async (): Promise<string | undefined> => (await km.health()).detail;
    await km.getContentKey('c1');
    proxy.mode = 'error500';
    for (let i = 0; i < 3; i++)
      expect(await codeOf(km.getContentKey('c1'))).toBe('KEY_UNAVAILABLE');
    proxy.hits = 0;
    const e = await errorOf(km.getContentKey('c1'));
    expect(e.detail).toBe('circuit open');
    expect(proxy.hits).toBe(0);
    expect(await wrapperState()).toBe('circuit open');
    // Still failing after the cooldown: one probe goes through, fails, the circuit re-opens.
    now += 5_001;
    expect(await codeOf(km.getContentKey('c1'))).toBe('KEY_UNAVAILABLE');
    expect(proxy.hits).toBe(1);
    expect((await errorOf(km.getContentKey('c1'))).detail).toBe('circuit open');
    // Back: the next probe succeeds and closes the circuit.
    proxy.mode = 'pass';
    now += 5_001;
    expect(await codeOf(km.getContentKey('c1'))).toBe('OK');
    expect(await codeOf(km.rotate('c1'))).toBe('OK');
  });

  it('serves unwrapped keys from the cache within the TTL, and not with TTL 0', async () => {
    let now = 1_000_000;
    const cached = await openKm({ cacheTtlMs: 10_000, now: () => now });
    const k = await cached.getContentKey('c1');
    await proxy.down();
    expect((await cached.getContentKey('c1', 0)).key).toEqual(k.key);
    now += 10_001;
    expect(await codeOf(cached.getContentKey('c1', 0))).toBe('KEY_UNAVAILABLE');
    await proxy.up();

    const uncached = await openHttpKeyManager({
      ...clientOptions(proxy.url),
      keyId: 'kek',
      path: join(env.dir, 'other.db'),
    });
    closers.push(() => uncached.close());
    await uncached.getContentKey('c9');
    await proxy.down();
    expect(await codeOf(uncached.getContentKey('c9'))).toBe('KEY_UNAVAILABLE');
    await proxy.up();
  });

  it('a refusal by the enterprise (revocation) is KEY_UNAVAILABLE and is not retried', async () => {
    const km = await openKm();
    await km.getContentKey('c1');
    await km.getContentKey('c2');
    env.kms.revoke('c1');
    proxy.hits = 0;
    const e = await errorOf(km.getContentKey('c1'));
    expect(e.code).toBe('KEY_UNAVAILABLE');
    expect(e.detail).toMatch(/FORBIDDEN/);
    expect(proxy.hits).toBe(1);
    expect(await codeOf(km.getContentKey('c2'))).toBe('OK');
    const refused = env.kms
      .audit()
      .filter((a) => a.contactId === 'c1' && a.operation === 'unwrap' && a.outcome === 'refused');
    expect(refused).toHaveLength(1);
  });

  it('key-store model: destroy with its reason, down, garbage and recovery', async () => {
    const km = openHttpKeyStoreManager(clientOptions(proxy.url, { breakerThreshold: 100 }));
    closers.push(() => km.close());
    await km.getContentKey('a');
    await km.getContentKey('b');
    await km.rotate('b');
    await km.destroy('a');
    expect(await codeOf(km.getContentKey('a'))).toBe('NOT_FOUND');
    const destroyed = env.kms
      .audit()
      .filter((x) => x.contactId === 'a' && x.operation === 'store.destroy');
    expect(destroyed.map((x) => x.reason)).toEqual(['destroy']);
    proxy.mode = 'garbage';
    expect(await codeOf(km.getContentKey('b'))).toBe('KEY_UNAVAILABLE');
    await proxy.down();
    expect(await codeOf(km.rotate('b'))).toBe('KEY_UNAVAILABLE');
    await proxy.up();
    proxy.mode = 'pass';
    expect(await km.currentEpoch('b')).toBe(1);
  });
});
