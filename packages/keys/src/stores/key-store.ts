/**
 * The wrapped key store: the KeyManager over a database of wrapped content keys (key-table.ts;
 * sqlite.ts or postgres.ts) and a KeyWrapper that holds the KEK (wrappers/), written once for
 * both databases (DESIGN.md "Key hierarchy"). Content keys live only in the wrapper's wrapped
 * form, per contact and epoch, with tombstones for destroyed contacts.
 *
 * Key generations (docs/key-management.md "Completing a shred"): the table counts the KEKs the
 * store has been wrapped under. A destroy that removed keys taints the current one (a copy of
 * the database taken before still holds those keys wrapped under it); a rewrap makes a new
 * generation current and the old one `retiring` in the same transaction; once its KEK is
 * destroyed (KekGenerations.destroy) it is `destroyed`.
 *
 * Concurrency: first creations are single-flight in the process and first-writer-wins in the
 * database; rotations compare the epoch they wrapped for inside their transaction; the last
 * step of a rewrap commits and swaps the wrapper while no call of this process is between
 * reading bytes and taking the wrapper (Gate), so bytes and wrapper always match.
 */
import { randomBytes } from '@latchkey/crypto/random';
import { LatchkeyError } from '@latchkey/protocol';
import type { ContentKey, KeyManagerHealth } from '../key-manager.ts';
import type { KeyWrapper, WrapReason } from '../key-wrapper.ts';
import { DestroyNotices } from './destroy-notices.ts';
import { Gate } from './gate.ts';
import {
  CHECK_CTX,
  MAX_EPOCH,
  checkContactId,
  checkEpoch,
  destroyed,
  rewrapId,
  unavailable,
  unknownContact,
  unknownEpoch,
  wrapFreshContentKey,
  type KeyTable,
} from './key-table.ts';
import type { KeyGenerationState, WrappedKeyManager } from './wrapped-key-manager.ts';

export {
  isGenerations,
  type KeyGenerationState,
  type KeyStoreOptions,
  type WrappedKeyManager,
} from './wrapped-key-manager.ts';

/** Rounds of catching up with keys written by other connections during a rewrap. */
const REWRAP_ROUNDS = 8;

export class WrappedKeyStore implements WrappedKeyManager {
  readonly #table: KeyTable;
  #wrapper: KeyWrapper;
  /** Bumped when the wrapper is replaced; a write wrapped under an older one retries. */
  #generation = 0;
  readonly #now: () => number;
  #closed = false;
  /** In-process single flight of first creations; the database covers other processes. */
  readonly #creating = new Map<string, Promise<void>>();
  /** Calls in flight, so a replaced wrapper is closed only after they finish. */
  readonly #inflight = new Set<Promise<unknown>>();
  #rewrapping: Promise<unknown> | null = null;
  /** Rewraps started so far: a write waits only for a rewrap that began after it did. */
  #rewraps = 0;
  readonly #gate = new Gate();
  readonly #notices: DestroyNotices;

  constructor(table: KeyTable, wrapper: KeyWrapper, now: () => number) {
    this.#table = table;
    this.#wrapper = wrapper;
    this.#now = now;
    this.#notices = new DestroyNotices(
      async (contactId) => {
        await this.#wrapper.destroyContact?.(contactId);
      },
      { owed: (limit) => table.owedNotices(limit), settled: (id) => table.settleNotice(id) },
    );
    // Notices a previous run (or another key service sharing the store) could not send.
    this.#notices.kick();
  }

  get currentWrapper(): KeyWrapper {
    return this.#wrapper;
  }

  #open(): void {
    if (this.#closed) throw new LatchkeyError('KEY_UNAVAILABLE', 'key manager is closed');
  }

  /** Tracks a call so that a replaced wrapper outlives it. */
  #track<T>(p: Promise<T>): Promise<T> {
    this.#inflight.add(p);
    const done = (): void => {
      this.#inflight.delete(p);
    };
    p.then(done, done);
    return p;
  }

  getContentKey(contactId: string, epoch?: number): Promise<ContentKey> {
    return this.#track(this.#getContentKey(contactId, epoch, this.#rewraps));
  }

  async #getContentKey(
    contactId: string,
    epoch: number | undefined,
    since: number,
  ): Promise<ContentKey> {
    this.#open();
    checkContactId(contactId);
    checkEpoch(epoch);
    // Read epoch and wrapped key in one snapshot, and take the wrapper inside the same gate,
    // so that a rewrap cannot commit and swap in between.
    const read = () =>
      this.#gate.shared(async () => ({
        row: await this.#table.read(contactId, epoch),
        wrapper: this.#wrapper,
      }));
    let { row, wrapper } = await read();
    if (row === undefined) {
      if (epoch !== undefined && epoch !== 0) throw unknownEpoch();
      await this.#create(contactId, since);
      this.#open();
      ({ row, wrapper } = await read());
    }
    if (row === undefined) throw unknownContact();
    if (row.destroyed) throw destroyed();
    const want = epoch ?? row.current;
    if (want > row.current || row.wrapped === null) throw unknownEpoch();
    let key: Uint8Array;
    try {
      key = await wrapper.unwrap(row.wrapped, { contactId, epoch: want, reason: 'fetch' });
    } catch (err) {
      throw unavailable('stored key could not be unwrapped', err);
    }
    return { contactId, epoch: want, currentEpoch: row.current, key };
  }

  /**
   * A fresh content key wrapped by the current wrapper, and that wrapper's generation. A call
   * that began (`since`, the rewrap count then) before a rewrap goes ahead: the rewrap picks
   * its key up, or the generation check makes it wrap again.
   */
  async #fresh(
    contactId: string,
    epoch: number,
    reason: WrapReason,
    since: number,
  ): Promise<{ wrapped: Uint8Array; generation: number }> {
    while (this.#rewrapping !== null && this.#rewraps === since)
      await this.#rewrapping.catch(() => undefined);
    const generation = this.#generation;
    const wrapper = this.#wrapper;
    try {
      return {
        wrapped: await wrapFreshContentKey(wrapper, { contactId, epoch, reason }),
        generation,
      };
    } catch (err) {
      throw unavailable('key could not be wrapped', err);
    }
  }

  #create(contactId: string, since: number): Promise<void> {
    const pending = this.#creating.get(contactId);
    if (pending !== undefined) return pending;
    const job = (async () => {
      for (let attempt = 0; attempt < 8; attempt++) {
        const { wrapped, generation } = await this.#fresh(contactId, 0, 'create', since);
        since = this.#rewraps;
        this.#open();
        // Wrapped under a wrapper that a rewrap has since replaced: wrap again.
        const stored = await this.#gate.shared(() =>
          this.#table.create(
            contactId,
            wrapped,
            this.#now(),
            () => generation === this.#generation,
          ),
        );
        if (stored) return;
      }
      throw new LatchkeyError('CONFLICT', 'key-encryption key changed too often');
    })();
    this.#creating.set(contactId, job);
    return job.finally(() => this.#creating.delete(contactId));
  }

  async currentEpoch(contactId: string): Promise<number> {
    this.#open();
    checkContactId(contactId);
    const c = await this.#table.contact(contactId);
    if (c === undefined) throw unknownContact();
    if (c.destroyed) throw destroyed();
    return c.current;
  }

  rotate(contactId: string): Promise<number> {
    return this.#track(this.#rotate(contactId, this.#rewraps));
  }

  async #rotate(contactId: string, since: number): Promise<number> {
    this.#open();
    checkContactId(contactId);
    for (let attempt = 0; attempt < 16; attempt++) {
      const current = await this.currentEpoch(contactId);
      const next = current + 1;
      if (next > MAX_EPOCH) throw new LatchkeyError('CONFLICT', 'epoch limit reached');
      const { wrapped, generation } = await this.#fresh(contactId, next, 'rotate', since);
      since = this.#rewraps;
      this.#open();
      // Another process rotated while we wrapped (our key is bound to a taken epoch), or the
      // wrapper was replaced: retry.
      const done = await this.#gate.shared(() =>
        this.#table.addEpoch(
          contactId,
          current,
          wrapped,
          this.#now(),
          () => generation === this.#generation,
        ),
      );
      if (done) return next;
    }
    throw new LatchkeyError('CONFLICT', 'too many concurrent rotations');
  }

  async destroy(contactId: string): Promise<void> {
    this.#open();
    checkContactId(contactId);
    await this.#table.destroy(contactId, this.#now(), this.#wrapper.destroyContact !== undefined);
    this.#notices.kick();
  }

  async owedDestroyNotices(): Promise<string[]> {
    this.#open();
    return this.#table.owedNotices(10_000);
  }

  async flushDestroyNotices(): Promise<void> {
    this.#open();
    this.#notices.kick();
    await this.#notices.idle();
  }

  async rewrap(next: KeyWrapper): Promise<{ rewrapped: number }> {
    this.#open();
    if (this.#rewrapping !== null)
      throw new LatchkeyError('CONFLICT', 'a rewrap is already running');
    this.#rewraps++;
    const job = this.#rewrap(next);
    this.#rewrapping = job;
    try {
      return await job;
    } finally {
      this.#rewrapping = null;
    }
  }

  async #rewrap(next: KeyWrapper): Promise<{ rewrapped: number }> {
    const old = this.#wrapper;
    // The same wrapper again: the backend re-wraps under its KEK's newest version itself (an
    // external key manager's rewrap), the key never leaving it; the generation stays.
    const inPlace = next === old ? old.rewrap?.bind(old) : undefined;
    if (next === old && inPlace === undefined)
      throw new LatchkeyError(
        'BAD_REQUEST',
        `the ${old.backend} key manager cannot re-wrap in place`,
      );
    let check: Uint8Array | undefined;
    if (next.checkAtOpen) {
      const probe = randomBytes(32);
      try {
        check = await next.wrap(probe, { ...CHECK_CTX, reason: 'rewrap' });
      } catch (err) {
        throw unavailable('key could not be wrapped', err);
      } finally {
        probe.fill(0);
      }
    }
    const done = new Map<string, Uint8Array>();
    for (let round = 0; round < REWRAP_ROUNDS; round++) {
      for (const r of await this.#table.allKeys()) {
        if (done.has(rewrapId(r))) continue;
        const ctx = { contactId: r.contactId, epoch: r.epoch, reason: 'rewrap' as const };
        if (inPlace !== undefined) {
          try {
            done.set(rewrapId(r), await inPlace(r.wrapped, ctx));
          } catch (err) {
            throw unavailable('stored key could not be re-wrapped', err);
          }
          continue;
        }
        let key: Uint8Array;
        try {
          key = await old.unwrap(r.wrapped, ctx);
        } catch (err) {
          throw unavailable('stored key could not be unwrapped', err);
        }
        try {
          done.set(rewrapId(r), await next.wrap(key, ctx));
        } catch (err) {
          throw unavailable('key could not be wrapped', err);
        } finally {
          key.fill(0);
        }
      }
      this.#open();
      const count = await this.#gate.exclusive(async () => {
        const n = await this.#table.commitRewrap({
          done,
          check,
          newGeneration: next !== old,
          now: this.#now(),
        });
        // Swap while no call of this process is between reading bytes and taking the wrapper.
        if (n >= 0) {
          this.#wrapper = next;
          this.#generation++;
        }
        return n;
      });
      if (count >= 0) {
        if (next !== old) void Promise.allSettled([...this.#inflight]).then(() => old.close());
        return { rewrapped: count };
      }
    }
    throw new LatchkeyError('CONFLICT', 'keys kept changing during the rewrap');
  }

  async keyGeneration(): Promise<KeyGenerationState> {
    this.#open();
    const rows = await this.#table.generations();
    const current = rows.find((r) => r.state === 'current');
    if (current === undefined)
      throw new LatchkeyError('KEY_UNAVAILABLE', 'key database has no current key generation');
    return {
      generation: current.generation,
      taintedSince: current.taintedAt,
      retiring: rows.filter((r) => r.state === 'retiring').map((r) => r.generation),
    };
  }

  async markDestroyed(generation: number): Promise<void> {
    this.#open();
    await this.#table.markDestroyed(generation);
  }

  async health(): Promise<KeyManagerHealth> {
    const backend = this.#wrapper.backend;
    if (this.#closed) return { status: 'degraded', backend, detail: 'closed' };
    try {
      await this.#table.ping();
    } catch (err) {
      return {
        status: 'degraded',
        backend,
        detail: LatchkeyError.is(err) ? (err.detail ?? err.message) : String(err),
      };
    }
    return this.#wrapper.health();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([...this.#creating.values(), ...this.#inflight]);
    if (this.#rewrapping !== null) await this.#rewrapping.catch(() => undefined);
    await this.#notices.close();
    await this.#table.close();
    await this.#wrapper.close();
  }
}
