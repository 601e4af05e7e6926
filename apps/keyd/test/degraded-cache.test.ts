/**
 * Degraded mode (src/degraded-cache.ts, with degraded-unreachable.ts and degraded-status.ts;
 * docs/key-management.md "Degraded mode"): first over a fake key manager switched between up,
 * down and refusing, with a fake clock (the wrapper's rules one by one); then over the reference
 * external key manager (apps/kms-example) in both models, stopped and started again on the same
 * port and data: cached keys served while it is away, rotation and new contacts refused with
 * KEY_UNAVAILABLE, recovery when it is back.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  openHttpKeyManager,
  openHttpKeyStoreManager,
  type ContentKey,
  type KeyManager,
  type KeyManagerHealth,
  type KmClientOptions,
  type WrappedKeyManager,
} from '@latchkey/keys';
import { AuthenticationError } from '@latchkey/crypto/aead';
import { LatchkeyError } from '@latchkey/protocol';
import { startKms, type Kms } from '../../kms-example/src/kms.ts';
import { DegradedKeyCache, withDegradedCache } from '../src/degraded-cache.ts';
import {
  formatDegradedState,
  keyCacheHealth,
  renderDegradedCacheMetrics,
  type DegradedStateChange,
} from '../src/degraded-status.ts';
import { isKeyManagerUnreachable } from '../src/degraded-unreachable.ts';

/** The error a promise rejects with (fails the test when it resolves). */
async function failure(p: Promise<unknown>): Promise<LatchkeyError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof LatchkeyError) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

type Mode =
  'up' | 'unwrap-down' | 'down' | 'econnrefused' | 'unavailable' | 'sig-refused' | 'access-refused';

/** The messages the External Key Manager client gives (packages/keys/src/wrappers/km-failures.ts). */
function failureOf(mode: Exclude<Mode, 'up'>): Error {
  switch (mode) {
    case 'unwrap-down':
    case 'down':
      return new LatchkeyError('KEY_UNAVAILABLE', 'external key manager unavailable', {
        detail: 'POST /v1/keys/{keyId}/unwrap: ECONNREFUSED',
      });
    case 'econnrefused':
      return Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    case 'unavailable':
      return new LatchkeyError('UNAVAILABLE', 'store unavailable');
    case 'sig-refused':
      return new LatchkeyError(
        'KEY_UNAVAILABLE',
        'the external key manager refused our signature (401)',
        { detail: 'HTTP 401 AUTH_INVALID' },
      );
    case 'access-refused':
      return new LatchkeyError(
        'KEY_UNAVAILABLE',
        'the external key manager refused access by its policy (403)',
        { detail: 'HTTP 403 FORBIDDEN' },
      );
  }
}

/** An in-memory key manager following the KeyManager contract, switchable between modes. */
class FakeKeyManager implements KeyManager {
  mode: Mode = 'up';
  readonly contacts = new Map<string, { keys: Uint8Array[]; destroyed: boolean }>();
  calls = 0;
  /** When set, getContentKey waits for it before answering (to overlap other calls). */
  gate: Promise<void> | undefined;
  #next = 1;

  #check(): void {
    this.calls++;
    if (this.mode !== 'up') throw failureOf(this.mode);
  }

  #fresh(): Uint8Array {
    return new Uint8Array(32).fill(this.#next++);
  }

  async getContentKey(contactId: string, epoch?: number): Promise<ContentKey> {
    if (this.gate) await this.gate;
    this.#check();
    let c = this.contacts.get(contactId);
    if (c === undefined) {
      if (epoch !== undefined && epoch !== 0) throw new LatchkeyError('NOT_FOUND', 'unknown epoch');
      c = { keys: [this.#fresh()], destroyed: false };
      this.contacts.set(contactId, c);
    }
    if (c.destroyed) throw new LatchkeyError('NOT_FOUND', 'contact keys were destroyed');
    const want = epoch ?? c.keys.length - 1;
    const key = c.keys[want];
    if (key === undefined) throw new LatchkeyError('NOT_FOUND', 'unknown epoch');
    return { contactId, epoch: want, currentEpoch: c.keys.length - 1, key: Uint8Array.from(key) };
  }

  async currentEpoch(contactId: string): Promise<number> {
    // The wrap model reads the epoch from its own database, without the key manager.
    if (this.mode === 'unwrap-down') this.calls++;
    else this.#check();
    const c = this.contacts.get(contactId);
    if (c === undefined) throw new LatchkeyError('NOT_FOUND', 'unknown contact');
    if (c.destroyed) throw new LatchkeyError('NOT_FOUND', 'contact keys were destroyed');
    return c.keys.length - 1;
  }

  async rotate(contactId: string): Promise<number> {
    this.#check();
    const c = this.contacts.get(contactId);
    if (c === undefined || c.destroyed) throw new LatchkeyError('NOT_FOUND', 'unknown contact');
    c.keys.push(this.#fresh());
    return c.keys.length - 1;
  }

  async destroy(contactId: string): Promise<void> {
    this.#check();
    const c = this.contacts.get(contactId);
    for (const k of c?.keys ?? []) k.fill(0);
    this.contacts.set(contactId, { keys: [], destroyed: true });
  }

  async health(): Promise<KeyManagerHealth> {
    return this.mode === 'up'
      ? { status: 'ok', backend: 'fake' }
      : { status: 'degraded', backend: 'fake', detail: this.mode };
  }

  closed = false;
  async close(): Promise<void> {
    this.closed = true;
  }
}

const TTL = 60_000;

describe('DegradedKeyCache over a fake key manager', () => {
  let km: FakeKeyManager;
  let t: number;
  let changes: DegradedStateChange[];
  let cache: DegradedKeyCache;
  const now = () => t;

  beforeEach(() => {
    km = new FakeKeyManager();
    t = 1_000_000;
    changes = [];
    cache = new DegradedKeyCache(km, { ttlMs: TTL, now, onState: (c) => changes.push(c) });
  });
  afterEach(async () => {
    await cache.close();
    vi.restoreAllMocks();
  });

  it('is a pure pass-through with the cache off: the same results and the same errors', async () => {
    const off = withDegradedCache(km, { now, onState: (c) => changes.push(c) });
    const k = await off.getContentKey('c1');
    expect(k.epoch).toBe(0);
    km.mode = 'down';
    const err = await failure(off.getContentKey('c1'));
    expect(err.message).toBe('external key manager unavailable');
    // Not even a raw network error is converted: exactly today's behaviour.
    km.mode = 'econnrefused';
    await expect(off.getContentKey('c1')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await expect(off.currentEpoch('c1')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect(changes).toEqual([]);
    expect(off.status()).toMatchObject({
      enabled: false,
      degraded: false,
      cacheTtlMs: 0,
      cached: 0,
      servedFromCache: 0,
    });
    await off.close();
    expect(km.closed).toBe(true);
  });

  it('serves keys and current epochs it fetched while the key manager is down, within the TTL', async () => {
    const k0 = await cache.getContentKey('c1');
    await cache.rotate('c1');
    const k1 = await cache.getContentKey('c1');
    expect(k1.epoch).toBe(1);
    expect(cache.status()).toMatchObject({ degraded: false, cached: 2 });

    km.mode = 'down';
    t += TTL - 1;
    const got = await cache.getContentKey('c1');
    expect(got).toEqual({ contactId: 'c1', epoch: 1, currentEpoch: 1, key: k1.key });
    const old = await cache.getContentKey('c1', 0);
    expect(old.key).toEqual(k0.key);
    expect(old.currentEpoch).toBe(1);
    expect(await cache.currentEpoch('c1')).toBe(1);

    expect(changes).toEqual([
      {
        state: 'degraded',
        since: t,
        code: 'KEY_UNAVAILABLE',
        reason: 'external key manager unavailable',
      },
    ]);
    const s = cache.status();
    expect(s).toMatchObject({
      enabled: true,
      degraded: true,
      since: t,
      lastError: { at: t, code: 'KEY_UNAVAILABLE', reason: 'external key manager unavailable' },
      cacheTtlMs: TTL,
      cached: 2,
      servedFromCache: 3,
      servedWhileDegraded: 3,
      degradedPeriods: 1,
    });
    expect(formatDegradedState(changes[0]!)).toBe(
      'key manager: degraded (serving cached keys): KEY_UNAVAILABLE: external key manager unavailable',
    );
  });

  it('refuses with the key manager’s own KEY_UNAVAILABLE once the TTL is over, or for what it never fetched', async () => {
    await cache.getContentKey('c1');
    km.mode = 'down';
    // Never fetched: another epoch, another contact (a new contact's first key), its epoch.
    const e1 = await failure(cache.getContentKey('c1', 1));
    expect(e1.code).toBe('KEY_UNAVAILABLE');
    expect(e1.message).toBe('external key manager unavailable');
    expect((await failure(cache.getContentKey('new'))).code).toBe('KEY_UNAVAILABLE');
    expect((await failure(cache.currentEpoch('new'))).code).toBe('KEY_UNAVAILABLE');
    expect(km.contacts.has('new')).toBe(false);

    t += TTL;
    expect((await failure(cache.getContentKey('c1'))).code).toBe('KEY_UNAVAILABLE');
    expect((await failure(cache.getContentKey('c1', 0))).code).toBe('KEY_UNAVAILABLE');
    expect((await failure(cache.currentEpoch('c1'))).code).toBe('KEY_UNAVAILABLE');
    expect(cache.status()).toMatchObject({
      degraded: true,
      cached: 0,
      servedFromCache: 0,
      missedWhileDegraded: 6,
    });
  });

  it('counts the TTL from the fetch: a key re-fetched while up lives on, serving it does not extend it', async () => {
    await cache.getContentKey('c1');
    t += TTL / 2;
    await cache.getContentKey('c1');
    km.mode = 'down';
    t += TTL / 2 + 1;
    await cache.getContentKey('c1'); // served: re-fetched TTL/2 + 1 ago
    t += TTL / 2 - 2;
    await cache.getContentKey('c1'); // served: 1 ms left
    t += 1;
    expect((await failure(cache.getContentKey('c1'))).code).toBe('KEY_UNAVAILABLE');
  });

  it('refuses rotation with KEY_UNAVAILABLE while down, changes nothing, and stops vouching for the current epoch', async () => {
    const k0 = await cache.getContentKey('c1');
    km.mode = 'down';
    const err = await failure(cache.rotate('c1'));
    expect(err.code).toBe('KEY_UNAVAILABLE');
    expect(km.contacts.get('c1')!.keys).toHaveLength(1);
    // The epoch the rotation was to replace is not handed out as current from the cache...
    expect((await failure(cache.getContentKey('c1'))).code).toBe('KEY_UNAVAILABLE');
    expect((await failure(cache.currentEpoch('c1'))).code).toBe('KEY_UNAVAILABLE');
    // ...but reading it by its epoch still works.
    expect((await cache.getContentKey('c1', 0)).key).toEqual(k0.key);

    km.mode = 'up';
    expect(await cache.rotate('c1')).toBe(1);
    expect(changes.map((c) => c.state)).toEqual(['degraded', 'recovered']);
  });

  it('lets no current epoch read locally while degraded (wrap model) undo a failed rotation', async () => {
    await cache.getContentKey('c1');
    km.mode = 'unwrap-down';
    expect((await failure(cache.rotate('c1'))).code).toBe('KEY_UNAVAILABLE');
    expect(await cache.currentEpoch('c1')).toBe(0);
    expect((await failure(cache.getContentKey('c1'))).code).toBe('KEY_UNAVAILABLE');
    expect((await cache.getContentKey('c1', 0)).epoch).toBe(0);
  });

  it('turns any unreachable failure into KEY_UNAVAILABLE (raw network errors, UNAVAILABLE)', async () => {
    await cache.getContentKey('c1');
    km.mode = 'econnrefused';
    expect((await cache.getContentKey('c1')).epoch).toBe(0);
    expect(cache.status().lastError?.code).toBe('ECONNREFUSED');
    const e = await failure(cache.rotate('c1'));
    expect(e.code).toBe('KEY_UNAVAILABLE');
    expect(e.cause).toMatchObject({ code: 'ECONNREFUSED' });
    km.mode = 'unavailable';
    expect((await cache.getContentKey('c1', 0)).epoch).toBe(0);
    const u = await failure(cache.rotate('c1'));
    expect(u.code).toBe('KEY_UNAVAILABLE');
    expect((await failure(cache.getContentKey('new'))).code).toBe('KEY_UNAVAILABLE');
  });

  it('never answers a destroy from the cache: while down it fails and drops the contact at once', async () => {
    await cache.getContentKey('c1');
    await cache.getContentKey('c2');
    km.mode = 'down';
    const err = await failure(cache.destroy('c1'));
    expect(err.code).toBe('KEY_UNAVAILABLE');
    expect(km.contacts.get('c1')!.destroyed).toBe(false);
    expect((await failure(cache.getContentKey('c1'))).code).toBe('KEY_UNAVAILABLE');
    expect((await failure(cache.getContentKey('c1', 0))).code).toBe('KEY_UNAVAILABLE');
    expect((await failure(cache.currentEpoch('c1'))).code).toBe('KEY_UNAVAILABLE');
    // Other contacts are still served.
    expect((await cache.getContentKey('c2')).epoch).toBe(0);
    expect(cache.status()).toMatchObject({ degraded: true, cached: 1 });
  });

  it('drops a contact on a successful destroy, so it is not served when the key manager goes down after', async () => {
    await cache.getContentKey('c1');
    await cache.destroy('c1');
    expect(cache.status().cached).toBe(0);
    km.mode = 'down';
    expect((await failure(cache.getContentKey('c1', 0))).code).toBe('KEY_UNAVAILABLE');
  });

  it('does not cache a fetch that overlapped a destroy', async () => {
    await cache.getContentKey('c1');
    let open!: () => void;
    km.gate = new Promise<void>((r) => (open = r));
    const pending = cache.getContentKey('c1');
    km.gate = undefined;
    await cache.destroy('c1');
    // The fake answered the fetch before the destroy: its answer must not come back in.
    km.contacts.set('c1', { keys: [new Uint8Array(32).fill(9)], destroyed: false });
    open();
    await pending;
    expect(cache.status().cached).toBe(0);
  });

  it('leaves degraded mode on the first call the key manager answers, and says so', async () => {
    await cache.getContentKey('c1');
    km.mode = 'down';
    await cache.getContentKey('c1');
    await cache.getContentKey('c1');
    await failure(cache.rotate('c1'));
    t += 5_000;
    // currentEpoch's success proves nothing (the wrap model answers it locally): still degraded.
    km.mode = 'up';
    await cache.currentEpoch('c1');
    expect(cache.status().degraded).toBe(true);
    await cache.getContentKey('c1');
    expect(changes).toEqual([
      expect.objectContaining({ state: 'degraded', since: t - 5_000 }),
      { state: 'recovered', since: t - 5_000, at: t, servedFromCache: 2 },
    ]);
    expect(formatDegradedState(changes[1]!)).toBe(
      'key manager: recovered (degraded for 5 s, 2 answers served from the cache)',
    );
    expect(cache.status()).toMatchObject({
      degraded: false,
      servedFromCache: 2,
      servedWhileDegraded: 0,
      degradedPeriods: 1,
    });
    expect(cache.status().since).toBeUndefined();
    // A second outage is a second period; a healthy health() ends it too.
    km.mode = 'down';
    await cache.getContentKey('c1');
    expect(cache.status()).toMatchObject({ degraded: true, degradedPeriods: 2 });
    expect((await cache.health()).status).toBe('degraded');
    expect(cache.status().degraded).toBe(true);
    km.mode = 'up';
    expect((await cache.health()).status).toBe('ok');
    expect(cache.status().degraded).toBe(false);
    expect(changes.map((c) => c.state)).toEqual(['degraded', 'recovered', 'degraded', 'recovered']);
  });

  it('does not mask a refusal (401, 403): passed on, not degraded, and the contact is dropped', async () => {
    await cache.getContentKey('c1');
    await cache.getContentKey('c2');
    km.mode = 'sig-refused';
    const e401 = await failure(cache.getContentKey('c1'));
    expect(e401.message).toBe('the external key manager refused our signature (401)');
    km.mode = 'access-refused';
    const e403 = await failure(cache.getContentKey('c2', 0));
    expect(e403.message).toBe('the external key manager refused access by its policy (403)');
    expect(cache.status()).toMatchObject({ degraded: false, cached: 0, servedFromCache: 0 });
    expect(changes).toEqual([]);
    // And once it is down, what it refused is not served either.
    km.mode = 'down';
    expect((await failure(cache.getContentKey('c1'))).code).toBe('KEY_UNAVAILABLE');
    expect((await failure(cache.getContentKey('c2', 0))).code).toBe('KEY_UNAVAILABLE');
  });

  it('passes NOT_FOUND on: an unknown epoch drops nothing else, a destroyed contact everything', async () => {
    await cache.getContentKey('c1');
    expect((await failure(cache.getContentKey('c1', 5))).code).toBe('NOT_FOUND');
    expect(cache.status().cached).toBe(1);
    // Destroyed by another key service sharing the key manager.
    km.contacts.get('c1')!.destroyed = true;
    expect((await failure(cache.getContentKey('c1', 0))).code).toBe('NOT_FOUND');
    expect(cache.status().cached).toBe(0);
    expect((await failure(cache.getContentKey('bad/id', 99))).code).toBe('NOT_FOUND');
    expect(cache.status().degraded).toBe(false);
  });

  it('hands out copies: callers may zero what they get, from the key manager or the cache', async () => {
    const first = await cache.getContentKey('c1');
    const want = Uint8Array.from(first.key);
    first.key.fill(0);
    km.mode = 'down';
    const a = await cache.getContentKey('c1');
    expect(a.key).toEqual(want);
    a.key.fill(0);
    const b = await cache.getContentKey('c1');
    expect(b.key).toEqual(want);
    expect(b.key).not.toBe(a.key);
  });

  /** The cache's own copies of the keys stored by `fetch` (every Uint8Array.from made meanwhile). */
  async function cachedCopies(fetch: () => Promise<ContentKey>): Promise<Uint8Array[]> {
    const spy = vi.spyOn(Uint8Array, 'from');
    try {
      const got = await fetch();
      const copies = spy.mock.results
        .map((r) => r.value as Uint8Array)
        .filter((u) => u !== got.key && u.some((b) => b !== 0));
      return copies;
    } finally {
      spy.mockRestore();
    }
  }

  const zeroed = (u: Uint8Array): boolean => u.every((b) => b === 0);

  it('zeroes cached key bytes when they expire, even without a call', async () => {
    const copies = await cachedCopies(() => cache.getContentKey('c1'));
    expect(copies.length).toBeGreaterThan(0);
    expect(copies.some(zeroed)).toBe(false);
    t += TTL;
    cache.sweep();
    expect(copies.every(zeroed)).toBe(true);
    expect(cache.status().cached).toBe(0);
  });

  it('bounds the cache (oldest fetch evicted and zeroed) and zeroes everything on close', async () => {
    const small = new DegradedKeyCache(km, { ttlMs: TTL, now, maxEntries: 2 });
    const c1 = await cachedCopies(() => small.getContentKey('c1'));
    const c2 = await cachedCopies(() => small.getContentKey('c2'));
    const c3 = await cachedCopies(() => small.getContentKey('c3'));
    expect(c1.every(zeroed)).toBe(true);
    expect(c2.some(zeroed) || c3.some(zeroed)).toBe(false);
    expect(small.status().cached).toBe(2);
    km.mode = 'down';
    expect((await failure(small.getContentKey('c1'))).code).toBe('KEY_UNAVAILABLE');
    expect((await small.getContentKey('c3')).epoch).toBe(0);
    await small.close();
    expect([...c2, ...c3].every(zeroed)).toBe(true);
    expect(small.status().cached).toBe(0);
    // Closed: nothing is served any more; the inner manager decides (here: still down).
    expect((await failure(small.getContentKey('c3'))).code).toBe('KEY_UNAVAILABLE');
  });

  it('survives an onState that throws', async () => {
    const noisy = new DegradedKeyCache(km, {
      ttlMs: TTL,
      now,
      onState: () => {
        throw new Error('log broke');
      },
    });
    await noisy.getContentKey('c1');
    km.mode = 'down';
    expect((await noisy.getContentKey('c1')).epoch).toBe(0);
    km.mode = 'up';
    expect((await noisy.getContentKey('c1')).epoch).toBe(0);
    await noisy.close();
  });

  it('refuses a bad TTL or bound', () => {
    expect(() => new DegradedKeyCache(km, { ttlMs: -1 })).toThrow(RangeError);
    expect(() => new DegradedKeyCache(km, { ttlMs: Number.NaN })).toThrow(RangeError);
    expect(() => new DegradedKeyCache(km, { ttlMs: 1, maxEntries: 0 })).toThrow(RangeError);
  });

  it('describes itself for /healthz, and not at all while off', async () => {
    expect(keyCacheHealth(new DegradedKeyCache(km).status())).toBeUndefined();
    expect(keyCacheHealth(cache.status())).toEqual({
      ttlSeconds: 60,
      degraded: false,
      entries: 0,
      servedFromCache: 0,
      missedWhileDegraded: 0,
    });
    await cache.getContentKey('c1');
    km.mode = 'down';
    await cache.getContentKey('c1');
    const iso = new Date(t).toISOString();
    expect(keyCacheHealth(cache.status())).toEqual({
      ttlSeconds: 60,
      degraded: true,
      since: iso,
      entries: 1,
      servedFromCache: 1,
      missedWhileDegraded: 0,
      lastError: { at: iso, code: 'KEY_UNAVAILABLE', reason: 'external key manager unavailable' },
    });
  });

  it('renders metrics with counts only', async () => {
    await cache.getContentKey('secret-contact');
    km.mode = 'down';
    await cache.getContentKey('secret-contact');
    await failure(cache.getContentKey('other'));
    const text = renderDegradedCacheMetrics(cache.status());
    expect(text).toContain('latchkey_keyd_key_manager_degraded 1\n');
    expect(text).toContain(`latchkey_keyd_key_manager_degraded_since_seconds ${t / 1000}\n`);
    expect(text).toContain('latchkey_keyd_key_cache_ttl_seconds 60\n');
    expect(text).toContain('latchkey_keyd_key_cache_entries 1\n');
    expect(text).toContain('latchkey_keyd_key_cache_served_total 1\n');
    expect(text).toContain('latchkey_keyd_key_cache_misses_total 1\n');
    expect(text).toContain('latchkey_keyd_key_manager_degraded_periods_total 1\n');
    expect(text).not.toContain('contact');
  });
});

describe('isKeyManagerUnreachable', () => {
  it.each([
    ['KEY_UNAVAILABLE unavailable', failureOf('down'), true],
    [
      'circuit open',
      new LatchkeyError('KEY_UNAVAILABLE', 'external key manager unavailable', {
        detail: 'circuit open',
      }),
      true,
    ],
    [
      'malformed answer',
      new LatchkeyError('KEY_UNAVAILABLE', 'malformed answer from the external key manager'),
      true,
    ],
    ['UNAVAILABLE', failureOf('unavailable'), true],
    ['key store down', new LatchkeyError('KEY_UNAVAILABLE', 'key store unavailable'), true],
    ['ECONNREFUSED', failureOf('econnrefused'), true],
    [
      'ETIMEDOUT as cause',
      new Error('x', { cause: Object.assign(new Error('t'), { code: 'ETIMEDOUT' }) }),
      true,
    ],
    ['401', failureOf('sig-refused'), false],
    ['403', failureOf('access-refused'), false],
    [
      '401 clock',
      new LatchkeyError(
        'KEY_UNAVAILABLE',
        'the external key manager refused our timestamp (401): check the clocks',
      ),
      false,
    ],
    [
      'other 4xx',
      new LatchkeyError(
        'KEY_UNAVAILABLE',
        'the external key manager refused the request (400 BAD_REQUEST)',
      ),
      false,
    ],
    [
      'wrong key',
      new LatchkeyError('KEY_UNAVAILABLE', 'stored key could not be unwrapped', {
        cause: new AuthenticationError(),
      }),
      false,
    ],
    ['AuthenticationError', new AuthenticationError(), false],
    ['closed', new LatchkeyError('KEY_UNAVAILABLE', 'key manager is closed'), false],
    ['NOT_FOUND', new LatchkeyError('NOT_FOUND', 'contact keys were destroyed'), false],
    ['BAD_REQUEST', new LatchkeyError('BAD_REQUEST', 'invalid contact id'), false],
    ['a bug', new TypeError('x is undefined'), false],
  ])('%s → %s', (_name, err, want) => {
    expect(isKeyManagerUnreachable(err)).toBe(want);
  });
});

describe('DegradedKeyCache over the reference external key manager', () => {
  const SECRET = new Uint8Array(32).fill(42);
  const ROOT = new Uint8Array(32).fill(24);
  let dir: string;
  let kms: Kms | undefined;
  let inner: KeyManager | undefined;
  let cache: DegradedKeyCache | undefined;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'latchkey-keyd-degraded-'));
    kms = await startKms({
      path: join(dir, 'kms', 'kms.db'),
      rootKey: ROOT,
      clients: { latchkey: SECRET },
    });
  });
  afterEach(async () => {
    await cache?.close();
    await inner?.close();
    await kms?.close();
    cache = inner = kms = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  /** Fast-failing client options: no retry storm, the circuit half-open again at once. */
  const client = (url: string, secret = SECRET): KmClientOptions => ({
    url,
    auth: { type: 'hmac', clientId: 'latchkey', secret },
    timeoutMs: 2000,
    retries: 1,
    backoffMs: 1,
    maxBackoffMs: 5,
    breakerCooldownMs: 1,
  });

  const restart = async (port: number): Promise<Kms> =>
    startKms({
      path: join(dir, 'kms', 'kms.db'),
      rootKey: ROOT,
      clients: { latchkey: SECRET },
      port,
    });

  const models = {
    wrap: async (url: string): Promise<KeyManager> =>
      openHttpKeyManager({ ...client(url), keyId: 'latchkey-kek', path: join(dir, 'keys.db') }),
    store: async (url: string): Promise<KeyManager> => openHttpKeyStoreManager(client(url)),
  };

  for (const [model, open] of Object.entries(models)) {
    it(`${model} model: serves cached keys while it is stopped, refuses rotation and new contacts, recovers when it is back`, async () => {
      const changes: DegradedStateChange[] = [];
      inner = await open(kms!.url);
      cache = new DegradedKeyCache(inner, { ttlMs: 60_000, onState: (x) => changes.push(x) });
      const c = cache;
      const k0 = await c.getContentKey('alpha');
      expect(await c.rotate('alpha')).toBe(1);
      const k1 = await c.getContentKey('alpha');
      const old = await c.getContentKey('alpha', 0);
      expect(old.key).toEqual(k0.key);
      const beta = await c.getContentKey('beta');

      const port = kms!.port;
      await kms!.close();
      kms = undefined;

      // Served from memory, the same bytes the key manager gave.
      const served = await c.getContentKey('alpha');
      expect(served).toMatchObject({ contactId: 'alpha', epoch: 1, currentEpoch: 1 });
      expect(served.key).toEqual(k1.key);
      expect((await c.getContentKey('alpha', 0)).key).toEqual(k0.key);
      expect((await c.getContentKey('beta')).key).toEqual(beta.key);
      expect(await c.currentEpoch('alpha')).toBe(1);
      expect(changes).toEqual([
        expect.objectContaining({ state: 'degraded', code: 'KEY_UNAVAILABLE' }),
      ]);
      expect(c.status()).toMatchObject({ degraded: true, cached: 3 });

      // What the key manager must decide is refused, and nothing is half-applied.
      const rot = await failure(c.rotate('alpha'));
      expect(rot.code).toBe('KEY_UNAVAILABLE');
      // After a failed rotation the cache no longer says which epoch is current; epochs by number
      // are still served.
      expect((await failure(c.getContentKey('alpha'))).code).toBe('KEY_UNAVAILABLE');
      expect((await c.getContentKey('alpha', 1)).key).toEqual(k1.key);
      const fresh = await failure(c.getContentKey('gamma'));
      expect(fresh.code).toBe('KEY_UNAVAILABLE');
      // A shred asked while it is away: refused, and this node stops serving the contact.
      // (The wrap model records it locally and owes the key manager a destroy notice.)
      const shred = await c.destroy('beta').then(
        () => 'OK',
        (err: unknown) => (err as LatchkeyError).code,
      );
      expect(shred).toBe(model === 'wrap' ? 'OK' : 'KEY_UNAVAILABLE');
      expect(['KEY_UNAVAILABLE', 'NOT_FOUND']).toContain(
        (await failure(c.getContentKey('beta'))).code,
      );

      // Back on the same port and data: the first answer ends degraded mode.
      kms = await restart(port);
      // The wrap model's owed destroy notice (beta) goes out first: wait for that round, so our
      // call is not refused as a second probe of the half-open circuit.
      if (model === 'wrap') {
        const wrapped = inner as WrappedKeyManager;
        await wrapped.flushDestroyNotices();
        expect(await wrapped.owedDestroyNotices()).toEqual([]);
      }
      const again = await c.getContentKey('alpha');
      expect(again.key).toEqual(k1.key);
      expect(changes.map((x) => x.state)).toEqual(['degraded', 'recovered']);
      expect(c.status()).toMatchObject({ degraded: false });
      // Nothing was lost: epoch 1 is still current (the refused rotation did not happen),
      // rotation and new contacts work again.
      expect(await c.currentEpoch('alpha')).toBe(1);
      expect(await c.rotate('alpha')).toBe(2);
      expect((await c.getContentKey('gamma')).epoch).toBe(0);
    });
  }

  it('never serves a contact the key manager refused (revoked: 403), even when it is down after', async () => {
    inner = await models.wrap(kms!.url);
    cache = new DegradedKeyCache(inner, { ttlMs: 60_000 });
    await cache.getContentKey('alpha');
    await cache.getContentKey('beta');
    kms!.revoke('alpha');
    const refused = await failure(cache.getContentKey('alpha'));
    expect(refused.code).toBe('KEY_UNAVAILABLE');
    expect(isKeyManagerUnreachable(refused)).toBe(false);
    expect(cache.status()).toMatchObject({ degraded: false, cached: 1 });
    await kms!.close();
    kms = undefined;
    expect((await failure(cache.getContentKey('alpha'))).code).toBe('KEY_UNAVAILABLE');
    expect((await cache.getContentKey('beta')).epoch).toBe(0);
    expect(cache.status().degraded).toBe(true);
  });

  it('classifies the real client’s errors: a stopped service is unreachable, a refused signature is not', async () => {
    const wrongSecret = openHttpKeyStoreManager(client(kms!.url, new Uint8Array(32).fill(1)));
    const e401 = await failure(wrongSecret.getContentKey('alpha'));
    expect(e401.code).toBe('KEY_UNAVAILABLE');
    expect(isKeyManagerUnreachable(e401)).toBe(false);
    await wrongSecret.close();
    const url = kms!.url;
    await kms!.close();
    kms = undefined;
    const gone = openHttpKeyStoreManager(client(url));
    const down = await failure(gone.getContentKey('alpha'));
    expect(down.code).toBe('KEY_UNAVAILABLE');
    expect(isKeyManagerUnreachable(down)).toBe(true);
    await gone.close();
  });
});
