/**
 * Degraded mode of the key service (docs/key-management.md "Degraded mode"; issue 17): a
 * KeyManager in front of the real one that remembers, in memory only, the content keys and
 * current epochs the key manager handed out, each for `ttlMs` from when it was fetched. Every
 * call still goes to the key manager first; only when it cannot be reached (down, timing out,
 * circuit open, answering garbage: degraded-unreachable.ts) are `getContentKey` and
 * `currentEpoch` answered from unexpired entries, and the service is "degraded" until a call
 * succeeds again (declared in the log, `/healthz` and `/metrics`: degraded-status.ts). Anything
 * the key manager refused (401, 403, a revoked or shredded contact, NOT_FOUND) is passed on.
 *
 * Nothing the key manager must decide is answered here: rotation and a new contact's first key
 * fail with KEY_UNAVAILABLE as they do without the cache (nothing half-applied), and a destroy
 * (crypto-shredding) always goes to the key manager and drops the contact's cached keys first,
 * whether it succeeds or not, so a shred asked of this node stops it serving the contact at
 * once. A failed rotation drops the contact's cached current epoch (older epochs stay), so the
 * cache never vouches for an epoch a rotation (a kick) was meant to replace.
 *
 * Memory is bounded (`maxEntries`, oldest fetch evicted first: the least recently used while the
 * key manager is up, as every use re-fetches); key bytes are zeroed when they expire, are evicted
 * or dropped, and on close(). Callers get copies they may zero. `ttlMs` 0 or unset: a pure
 * pass-through, today's behaviour and errors.
 */
import type { ContentKey, KeyManager, KeyManagerHealth } from '@latchkey/keys';
import { LatchkeyError } from '@latchkey/protocol';
import type { DegradedCacheStatus, DegradedStateChange } from './degraded-status.ts';
import { asUnavailable, errorCode, isKeyManagerUnreachable } from './degraded-unreachable.ts';

/** Default most content keys (and, separately, current epochs) held at once. */
export const DEGRADED_CACHE_MAX_ENTRIES = 10_000;

export interface DegradedCacheOptions {
  /**
   * How long (ms) a key fetched from the key manager may be served while the key manager is
   * unreachable, counted from the fetch. 0 or unset: never (pure pass-through).
   */
  ttlMs?: number;
  /** Most content keys held (default 10,000); the oldest fetch is dropped first. */
  maxEntries?: number;
  /** Clock in Unix ms (tests). */
  now?: () => number;
  /** Told when the service enters and leaves degraded mode (for the log line). */
  onState?: (change: DegradedStateChange) => void;
  /** Which failures mean "unreachable" (default `isKeyManagerUnreachable`). */
  isUnreachable?: (err: unknown) => boolean;
  /**
   * How often expired keys are zeroed without traffic (ms; default ttl/10 within 1 s - 60 s).
   * Every call also drops what has expired.
   */
  sweepEveryMs?: number;
}

interface KeyEntry {
  contactId: string;
  epoch: number;
  key: Uint8Array;
  until: number;
}

/** A contact's current epoch, until when it may be served. */
type EpochEntry = Pick<KeyEntry, 'epoch' | 'until'>;

const keyId = (contactId: string, epoch: number): string => `${contactId}/${epoch}`;

/**
 * The KeyManager with degraded mode (see the module comment). Owns `inner`: close() closes it.
 * Only the KeyManager methods are wrapped: use the inner manager itself for the rest (rewrap,
 * key generations, destroy notices, `currentWrapper`), which leave content keys as they are.
 * Every rotate and destroy must come through the wrapper, so that the cache hears of them.
 */
export class DegradedKeyCache implements KeyManager {
  readonly #km: KeyManager;
  readonly #ttl: number;
  readonly #max: number;
  readonly #now: () => number;
  readonly #onState: ((c: DegradedStateChange) => void) | undefined;
  readonly #unreachable: (err: unknown) => boolean;
  /** Content keys in order of fetch (so also of expiry: the TTL is one for all). */
  readonly #keys = new Map<string, KeyEntry>();
  /** Current epoch per contact, in order of fetch. */
  readonly #currents = new Map<string, EpochEntry>();
  /** Bumped by every drop: a fetch that overlapped one is not cached (it may predate a shred). */
  #drops = 0;
  #since: number | undefined;
  #lastError: DegradedCacheStatus['lastError'];
  #served = 0;
  #servedNow = 0;
  #missed = 0;
  #periods = 0;
  #closed = false;
  readonly #timer: ReturnType<typeof setInterval> | undefined;

  /** @throws RangeError for a negative or non-finite TTL, or a max below 1. */
  constructor(inner: KeyManager, opts: DegradedCacheOptions = {}) {
    const ttl = opts.ttlMs ?? 0;
    if (!Number.isFinite(ttl) || ttl < 0) throw new RangeError('key cache TTL must be >= 0');
    const max = opts.maxEntries ?? DEGRADED_CACHE_MAX_ENTRIES;
    if (!Number.isInteger(max) || max < 1) throw new RangeError('maxEntries must be >= 1');
    this.#km = inner;
    this.#ttl = ttl;
    this.#max = max;
    this.#now = opts.now ?? Date.now;
    this.#onState = opts.onState;
    this.#unreachable = opts.isUnreachable ?? isKeyManagerUnreachable;
    if (ttl > 0) {
      const every = opts.sweepEveryMs ?? Math.min(Math.max(Math.floor(ttl / 10), 1000), 60_000);
      this.#timer = setInterval(() => this.sweep(), every);
      this.#timer.unref();
    }
  }

  get #on(): boolean {
    return this.#ttl > 0 && !this.#closed;
  }

  /**
   * The content key, from the key manager; while it is unreachable, from the cache.
   * @throws as KeyManager.getContentKey; KEY_UNAVAILABLE (the key manager's own error) when it
   *   is unreachable and the key is not cached or has expired.
   */
  async getContentKey(contactId: string, epoch?: number): Promise<ContentKey> {
    if (!this.#on) return this.#km.getContentKey(contactId, epoch);
    this.sweep();
    const drops = this.#drops;
    let got: ContentKey;
    try {
      got = await this.#km.getContentKey(contactId, epoch);
    } catch (err) {
      if (!this.#unreachable(err)) {
        this.#refused(contactId, err, epoch);
        throw err;
      }
      this.#enter(err);
      const hit = this.#cachedKey(contactId, epoch);
      if (hit === undefined) {
        this.#missed++;
        throw asUnavailable(err);
      }
      this.#hit();
      return hit;
    }
    this.#recover();
    if (drops === this.#drops) {
      this.#putKey(contactId, got.epoch, got.key);
      this.#putCurrent(contactId, got.currentEpoch);
    }
    return got;
  }

  /**
   * The current epoch, from the key manager; while it is unreachable, from the cache. A
   * success neither ends degraded mode nor is cached while degraded: the wrap model answers it
   * from its own database, without the key manager.
   * @throws as KeyManager.currentEpoch; KEY_UNAVAILABLE as getContentKey.
   */
  async currentEpoch(contactId: string): Promise<number> {
    if (!this.#on) return this.#km.currentEpoch(contactId);
    this.sweep();
    const drops = this.#drops;
    let epoch: number;
    try {
      epoch = await this.#km.currentEpoch(contactId);
    } catch (err) {
      if (!this.#unreachable(err)) {
        this.#refused(contactId, err);
        throw err;
      }
      this.#enter(err);
      const cur = this.#currents.get(contactId);
      if (cur === undefined || cur.until <= this.#now()) {
        this.#missed++;
        throw asUnavailable(err);
      }
      this.#hit();
      return cur.epoch;
    }
    // While degraded the answer may come from the wrap model's own database, not the key
    // manager: it must not renew what the cache vouches for (nor undo a failed rotation's drop).
    if (drops === this.#drops && this.#since === undefined) this.#putCurrent(contactId, epoch);
    return epoch;
  }

  /**
   * Rotation, always by the key manager. On any failure the contact's cached current epoch is
   * dropped (a timed-out rotation may have happened there).
   * @throws as KeyManager.rotate: KEY_UNAVAILABLE while the key manager is unreachable.
   */
  async rotate(contactId: string): Promise<number> {
    if (!this.#on) return this.#km.rotate(contactId);
    this.sweep();
    const drops = this.#drops;
    let epoch: number;
    try {
      epoch = await this.#km.rotate(contactId);
    } catch (err) {
      this.#currents.delete(contactId);
      if (!this.#unreachable(err)) {
        this.#refused(contactId, err);
        throw err;
      }
      this.#enter(err);
      this.#missed++;
      throw asUnavailable(err);
    }
    this.#recover();
    if (drops === this.#drops) this.#putCurrent(contactId, epoch);
    return epoch;
  }

  /**
   * Crypto-shredding, always by the key manager; the contact's cached keys are dropped (and
   * zeroed) before it is asked, so they are gone whether it succeeds or not.
   * @throws as KeyManager.destroy: KEY_UNAVAILABLE while the key manager is unreachable.
   */
  async destroy(contactId: string): Promise<void> {
    if (!this.#on) return this.#km.destroy(contactId);
    this.#dropContact(contactId);
    try {
      await this.#km.destroy(contactId);
    } catch (err) {
      if (!this.#unreachable(err)) throw err;
      this.#enter(err);
      throw asUnavailable(err);
    } finally {
      // A fetch that began before the destroy and ended after it must not be cached either.
      this.#dropContact(contactId);
    }
  }

  /** The inner health; an `ok` from the key manager ends degraded mode. Never throws. */
  async health(): Promise<KeyManagerHealth> {
    const h = await this.#km.health();
    if (this.#on && h.status === 'ok') this.#recover();
    return h;
  }

  /** Zeroes and drops every cached key, stops the sweep, closes the inner manager. Idempotent. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      if (this.#timer !== undefined) clearInterval(this.#timer);
      this.#clear();
    }
    await this.#km.close();
  }

  /** For `/healthz` and the metrics. */
  status(): DegradedCacheStatus {
    this.sweep();
    return {
      enabled: this.#ttl > 0,
      degraded: this.#since !== undefined,
      ...(this.#since === undefined ? {} : { since: this.#since }),
      ...(this.#lastError === undefined ? {} : { lastError: { ...this.#lastError } }),
      cacheTtlMs: this.#ttl,
      cached: this.#keys.size,
      servedFromCache: this.#served,
      servedWhileDegraded: this.#servedNow,
      missedWhileDegraded: this.#missed,
      degradedPeriods: this.#periods,
    };
  }

  /** Zeroes and drops every expired entry now (also done by every call and a timer). */
  sweep(): void {
    const t = this.#now();
    for (const [id, e] of this.#keys) {
      if (e.until > t) break;
      this.#dropKey(id);
    }
    for (const [id, e] of this.#currents) {
      if (e.until > t) break;
      this.#currents.delete(id);
    }
  }

  #cachedKey(contactId: string, epoch: number | undefined): ContentKey | undefined {
    const t = this.#now();
    const cur = this.#currents.get(contactId);
    const current = cur !== undefined && cur.until > t ? cur.epoch : undefined;
    const want = epoch ?? current;
    if (want === undefined) return undefined;
    const e = this.#keys.get(keyId(contactId, want));
    if (e === undefined || e.until <= t) return undefined;
    return {
      contactId,
      epoch: want,
      currentEpoch: Math.max(want, current ?? want),
      key: Uint8Array.from(e.key),
    };
  }

  #putKey(contactId: string, epoch: number, key: Uint8Array): void {
    const id = keyId(contactId, epoch);
    this.#dropKey(id);
    while (this.#keys.size >= this.#max) {
      const oldest = this.#keys.keys().next();
      if (oldest.done === true) break;
      this.#dropKey(oldest.value);
    }
    this.#keys.set(id, {
      contactId,
      epoch,
      key: Uint8Array.from(key),
      until: this.#now() + this.#ttl,
    });
  }

  #putCurrent(contactId: string, epoch: number): void {
    const prev = this.#currents.get(contactId);
    this.#currents.delete(contactId);
    while (this.#currents.size >= this.#max) {
      const oldest = this.#currents.keys().next();
      if (oldest.done === true) break;
      this.#currents.delete(oldest.value);
    }
    // Epochs only grow: an answer that lags one seen before (another node) does not lower it.
    const keep = prev !== undefined && prev.until > this.#now() && prev.epoch > epoch;
    this.#currents.set(contactId, {
      epoch: keep ? prev.epoch : epoch,
      until: this.#now() + this.#ttl,
    });
  }

  #dropKey(id: string): void {
    const e = this.#keys.get(id);
    if (e === undefined) return;
    e.key.fill(0);
    this.#keys.delete(id);
  }

  #dropContact(contactId: string): void {
    this.#drops++;
    this.#currents.delete(contactId);
    for (const [id, e] of this.#keys) if (e.contactId === contactId) this.#dropKey(id);
  }

  #clear(): void {
    for (const id of [...this.#keys.keys()]) this.#dropKey(id);
    this.#currents.clear();
  }

  /**
   * The key manager answered no for this contact: the cache must not outlive that. NOT_FOUND
   * for one epoch drops that epoch, unless it says the contact was destroyed; a malformed
   * request (ours) or a conflict says nothing about the contact.
   */
  #refused(contactId: string, err: unknown, epoch?: number): void {
    if (LatchkeyError.is(err, 'BAD_REQUEST') || LatchkeyError.is(err, 'CONFLICT')) return;
    if (
      LatchkeyError.is(err, 'NOT_FOUND') &&
      epoch !== undefined &&
      !/destroyed/i.test(`${err.message} ${err.detail ?? ''}`)
    ) {
      this.#drops++;
      this.#dropKey(keyId(contactId, epoch));
      return;
    }
    this.#dropContact(contactId);
  }

  #hit(): void {
    this.#served++;
    this.#servedNow++;
  }

  #enter(err: unknown): void {
    const at = this.#now();
    const code = errorCode(err);
    const reason = LatchkeyError.is(err) ? err.message : 'key manager unreachable';
    this.#lastError = { at, code, reason };
    if (this.#since !== undefined) return;
    this.#since = at;
    this.#servedNow = 0;
    this.#periods++;
    this.#tell({ state: 'degraded', since: at, code, reason });
  }

  #recover(): void {
    if (this.#since === undefined) return;
    const since = this.#since;
    this.#since = undefined;
    const served = this.#servedNow;
    this.#servedNow = 0;
    this.#tell({ state: 'recovered', since, at: this.#now(), servedFromCache: served });
  }

  #tell(change: DegradedStateChange): void {
    try {
      this.#onState?.(change);
    } catch {
      // A broken log must not turn into a key-manager failure.
    }
  }
}

/** `keyCacheTtlMs` in front of `km`: the wrapper, also when off (then a pass-through). */
export function withDegradedCache(km: KeyManager, opts: DegradedCacheOptions): DegradedKeyCache {
  return new DegradedKeyCache(km, opts);
}
