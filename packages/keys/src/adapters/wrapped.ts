/**
 * The wrapped key store: content keys in a SQLite file of their own (never the relay's message
 * database), per contact and epoch, with tombstones for destroyed contacts, each stored only in
 * the form a KeyWrapper made (DESIGN.md "Key hierarchy"). The wrapper decides where the KEK
 * lives: derived from the master key (internal), the enterprise's key manager (http), an HSM
 * (pkcs11). WAL with synchronous=FULL so an acknowledged key survives a power cut;
 * secure_delete plus a WAL checkpoint on destroy and rewrap so shredded or superseded wrapped
 * keys do not linger in free pages or the log.
 *
 * Key generations (docs/key-management.md "Completing a shred"): table `kek_generations` counts
 * the KEKs the store has been wrapped under. A destroy that removed keys marks the current one
 * tainted (a copy of the file taken before still holds those keys wrapped under it); a rewrap
 * makes a new generation current and the old one `retiring` in the same transaction; once its
 * KEK is destroyed (KekGenerations.destroy) it is `destroyed`.
 */
import { chmodSync, closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { AuthenticationError } from '@latchkey/crypto/aead';
import { randomBytes } from '@latchkey/crypto/random';
import { generateContentKey } from '@latchkey/crypto/wrap';
import { Epoch, Id, LatchkeyError } from '@latchkey/protocol';
import type { ContentKey, KeyManager, KeyManagerHealth } from '../key-manager.ts';
import type { KekGenerations, KeyWrapper, WrapReason, WrapRequest } from '../key-wrapper.ts';
import { DestroyNotices } from './destroy-notices.ts';

/** Schema version stored in `PRAGMA user_version`; each step below migrates from the previous. */
export const INTERNAL_SCHEMA_VERSION = 3;

const MIGRATIONS: readonly string[] = [
  // 0 -> 1
  `CREATE TABLE meta (
     name  TEXT PRIMARY KEY,
     value BLOB NOT NULL
   ) STRICT;
   CREATE TABLE contacts (
     contact_id    TEXT PRIMARY KEY,
     current_epoch INTEGER NOT NULL,
     created_at    INTEGER NOT NULL,
     destroyed_at  INTEGER
   ) STRICT;
   CREATE TABLE content_keys (
     contact_id TEXT NOT NULL REFERENCES contacts (contact_id),
     epoch      INTEGER NOT NULL,
     wrapped    BLOB NOT NULL,
     created_at INTEGER NOT NULL,
     PRIMARY KEY (contact_id, epoch)
   ) STRICT, WITHOUT ROWID;`,
  // 1 -> 2: key generations. A store that already holds tombstones had shreds under its one KEK.
  `CREATE TABLE kek_generations (
     generation INTEGER PRIMARY KEY,
     state      TEXT NOT NULL CHECK (state IN ('current', 'retiring', 'destroyed')),
     created_at INTEGER NOT NULL,
     tainted_at INTEGER,
     retired_at INTEGER,
     rewrapped  INTEGER
   ) STRICT;
   CREATE UNIQUE INDEX kek_generations_one_current ON kek_generations (state) WHERE state = 'current';
   INSERT INTO kek_generations (generation, state, created_at, tainted_at)
     VALUES (1, 'current', CAST(strftime('%s', 'now') AS INTEGER) * 1000,
             (SELECT min(destroyed_at) FROM contacts WHERE destroyed_at IS NOT NULL));`,
  // 2 -> 3: destroy notices owed to an external key manager (destroy-notices.ts).
  `CREATE TABLE destroy_notices (
     contact_id TEXT PRIMARY KEY,
     owed_since INTEGER NOT NULL
   ) STRICT;`,
];

/**
 * Wrapping context of the key-check value. The dot makes it impossible as a contact id, so it
 * can never collide with a real contact's wrapped key.
 */
const CHECK_CTX = { contactId: 'latchkey.kek-check', epoch: 0 } as const;
const MAX_EPOCH = 2 ** 31 - 1;
/** Rounds of catching up with keys written by other connections during a rewrap. */
const REWRAP_ROUNDS = 8;

export interface WrappedKeyManagerOptions {
  /** The SQLite file, e.g. `<dataDir>/keys/keys.db`. Missing directories are created 0700. */
  path: string;
  /**
   * Holds the KEK: a wrapper, or the KEK's generations, of which the store's current one is
   * opened. The key manager owns the wrapper from now on and closes it on close().
   */
  wrapper: KeyWrapper | KekGenerations;
  /** Clock in Unix milliseconds, for tests. */
  now?: () => number;
  /** Message of the KEY_UNAVAILABLE thrown when the KEK does not match the store. */
  mismatchMessage?: string;
}

/** A KeyManager over the wrapped key store, whose KEK can be replaced online. */
export interface WrappedKeyManager extends KeyManager {
  /**
   * Master-key rotation: re-wraps every stored content key (and the key-check value) under
   * `next` in one transaction, online: reads keep working throughout, creations and rotations
   * wait or retry, no message is touched. From then on the manager uses `next` (and owns it);
   * the previous wrapper is closed once the calls that began with it have finished. Other
   * processes using the same file must be restarted with the new KEK.
   * With `next` the manager's own wrapper (`currentWrapper`), every key is re-wrapped in place
   * by the backend under its KEK's newest version (`KeyWrapper.rewrap`: an external key
   * manager after the enterprise rotated its KEK); the key generation stays.
   * @returns how many content keys were re-wrapped.
   * @throws LatchkeyError KEY_UNAVAILABLE when a key cannot be unwrapped or wrapped (nothing
   *   is changed then), CONFLICT when other writers kept adding keys, BAD_REQUEST for an
   *   in-place rewrap the backend cannot do.
   */
  rewrap(next: KeyWrapper): Promise<{ rewrapped: number }>;

  /** The wrapper in use (for an in-place rewrap). */
  readonly currentWrapper: KeyWrapper;

  /** The store's KEK generation: current, tainted by a shred since when, retired but not yet destroyed. */
  keyGeneration(): Promise<KeyGenerationState>;

  /** Records that the KEK of a retired generation was destroyed. Idempotent. */
  markDestroyed(generation: number): Promise<void>;

  /**
   * Contacts whose destroy notice the external key manager has not yet taken (oldest first);
   * empty for wrappers that take none. Sent again in the background until it succeeds.
   */
  owedDestroyNotices(): Promise<string[]>;

  /** Sends owed destroy notices now and resolves when that round is over (tests, diagnostics). */
  flushDestroyNotices(): Promise<void>;
}

export interface KeyGenerationState {
  /** The generation every stored key is wrapped under (1 for a new store). */
  generation: number;
  /** When a destroy first removed keys wrapped under it (ms), or null. */
  taintedSince: number | null;
  /** Earlier generations re-wrapped away from whose KEK is not yet destroyed, oldest first. */
  retiring: number[];
}

/** Whether a `wrapper` option holds generations rather than one wrapper. */
export function isGenerations(w: KeyWrapper | KekGenerations): w is KekGenerations {
  return typeof (w as Partial<KekGenerations>).destroy === 'function';
}

interface ContactRow {
  current_epoch: number;
  destroyed_at: number | null;
}

interface KeyRow {
  contact_id: string;
  epoch: number;
  wrapped: Uint8Array;
}

/**
 * A fresh content key wrapped by `wrapper`: generated by the wrapper itself when it can (data-key
 * style), else here; the raw key is zeroed before returning. Shared by the SQLite and PostgreSQL
 * stores of wrapped keys.
 */
export async function wrapFreshContentKey(
  wrapper: KeyWrapper,
  req: WrapRequest,
): Promise<Uint8Array> {
  if (wrapper.generate !== undefined) {
    const made = await wrapper.generate(req);
    made.key.fill(0);
    return made.wrapped;
  }
  const key = generateContentKey();
  try {
    return await wrapper.wrap(key, req);
  } finally {
    key.fill(0);
  }
}

export function unavailable(message: string, err: unknown): LatchkeyError {
  if (LatchkeyError.is(err, 'KEY_UNAVAILABLE')) return err;
  return new LatchkeyError('KEY_UNAVAILABLE', message, {
    cause: err,
    detail: err instanceof Error ? err.message : String(err),
  });
}

/** Runs a synchronous SQLite step; anything but a LatchkeyError becomes KEY_UNAVAILABLE. */
function guard<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (LatchkeyError.is(err)) throw err;
    throw unavailable('key store unavailable', err);
  }
}

export function checkContactId(contactId: string): void {
  if (!Id.safeParse(contactId).success)
    throw new LatchkeyError('BAD_REQUEST', 'invalid contact id');
}

export function checkEpoch(epoch: number | undefined): void {
  if (epoch !== undefined && !Epoch.safeParse(epoch).success) {
    throw new LatchkeyError('BAD_REQUEST', 'invalid epoch');
  }
}

const destroyed = (): LatchkeyError =>
  new LatchkeyError('NOT_FOUND', 'contact keys were destroyed');
const unknownContact = (): LatchkeyError => new LatchkeyError('NOT_FOUND', 'unknown contact');
const unknownEpoch = (): LatchkeyError => new LatchkeyError('NOT_FOUND', 'unknown epoch');

/** Creates the file 0600 before SQLite does (its -wal and -shm files inherit that mode). */
export function preparePrivateFile(path: string): void {
  const dir = dirname(path);
  const first = mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (first !== undefined && process.platform !== 'win32') chmodSync(dir, 0o700);
  closeSync(openSync(path, 'a', 0o600));
  if (process.platform !== 'win32' && (statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
}

function migrate(db: Database.Database): void {
  const version = db.pragma('user_version', { simple: true });
  if (typeof version !== 'number' || version > INTERNAL_SCHEMA_VERSION) {
    throw new LatchkeyError('KEY_UNAVAILABLE', 'key database was written by a newer version', {
      detail: `user_version ${String(version)}, this build knows ${INTERNAL_SCHEMA_VERSION}`,
    });
  }
  db.transaction(() => {
    // Re-read inside the write transaction: another process may have migrated meanwhile.
    let v = db.pragma('user_version', { simple: true }) as number;
    for (; v < INTERNAL_SCHEMA_VERSION; v++) {
      const step = MIGRATIONS[v];
      if (step === undefined) throw new Error(`no migration from version ${v}`);
      db.exec(step);
      db.pragma(`user_version = ${v + 1}`);
    }
  }).immediate();
}

/** Opens the key database file with the store's pragmas and schema. */
export function openKeyDatabase(path: string): Database.Database {
  let db: Database.Database | undefined;
  try {
    preparePrivateFile(path);
    db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    db.pragma('secure_delete = ON');
    db.pragma('busy_timeout = 5000');
    migrate(db);
    return db;
  } catch (err) {
    db?.close();
    if (LatchkeyError.is(err)) throw err;
    throw unavailable('cannot open key database', err);
  }
}

/**
 * Verifies (creating on first use) the key-check value of `wrapper` in `db`.
 * @throws LatchkeyError KEY_UNAVAILABLE with `mismatch` when the KEK is not the store's.
 */
async function checkKek(
  db: Database.Database,
  wrapper: KeyWrapper,
  mismatch: string,
  path: string,
): Promise<void> {
  const ctx = { ...CHECK_CTX, reason: 'create' as WrapReason };
  try {
    const probe = randomBytes(32);
    const fresh = await wrapper.wrap(probe, ctx);
    probe.fill(0);
    db.prepare("INSERT OR IGNORE INTO meta (name, value) VALUES ('kek_check', ?)").run(fresh);
    const row = db
      .prepare<[], { value: Uint8Array }>("SELECT value FROM meta WHERE name = 'kek_check'")
      .get();
    if (row === undefined) throw new Error('kek_check missing');
    (await wrapper.unwrap(row.value, { ...ctx, reason: 'fetch' })).fill(0);
  } catch (err) {
    if (err instanceof AuthenticationError) {
      throw new LatchkeyError('KEY_UNAVAILABLE', mismatch, { detail: path });
    }
    throw unavailable('cannot open key database', err);
  }
}

/**
 * Opens (creating when missing) a wrapped key store at `opts.path` whose keys `opts.wrapper`
 * wraps. With a local wrapper (`checkAtOpen`) it checks that the KEK is the one the store was
 * created with. On failure the wrapper is closed.
 * @throws LatchkeyError KEY_UNAVAILABLE when the KEK does not match the store, the schema is
 *   newer than this build, or the file cannot be opened.
 */
export async function openWrappedKeyManager(
  opts: WrappedKeyManagerOptions,
): Promise<WrappedKeyManager> {
  let db: Database.Database;
  try {
    db = openKeyDatabase(opts.path);
  } catch (err) {
    if (!isGenerations(opts.wrapper)) await opts.wrapper.close();
    throw err;
  }
  let wrapper: KeyWrapper;
  if (isGenerations(opts.wrapper)) {
    try {
      const g = guard(() =>
        db
          .prepare<[], { generation: number }>(
            "SELECT generation FROM kek_generations WHERE state = 'current'",
          )
          .get(),
      );
      wrapper = await opts.wrapper.wrapper(g?.generation ?? 1, { create: false });
    } catch (err) {
      db.close();
      throw err;
    }
  } else {
    wrapper = opts.wrapper;
  }
  if (wrapper.checkAtOpen) {
    try {
      await checkKek(
        db,
        wrapper,
        opts.mismatchMessage ?? 'the key-encryption key does not match this key database',
        opts.path,
      );
    } catch (err) {
      db.close();
      await wrapper.close();
      throw err;
    }
  }
  return new WrappedStore(db, wrapper, opts.now ?? Date.now);
}

class WrappedStore implements WrappedKeyManager {
  readonly #db: Database.Database;
  #wrapper: KeyWrapper;
  /** Bumped when the wrapper is replaced; a write wrapped under an older one retries. */
  #generation = 0;
  readonly #now: () => number;
  #closed = false;
  /** In-process single flight of first creations; the database constraint covers other processes. */
  readonly #creating = new Map<string, Promise<void>>();
  /** Calls in flight, so a replaced wrapper is closed only after they finish. */
  readonly #inflight = new Set<Promise<unknown>>();
  #rewrapping: Promise<unknown> | null = null;
  readonly #notices: DestroyNotices;
  readonly #sql;

  constructor(db: Database.Database, wrapper: KeyWrapper, now: () => number) {
    this.#db = db;
    this.#wrapper = wrapper;
    this.#now = now;
    this.#sql = {
      contact: db.prepare<[string], ContactRow>(
        'SELECT current_epoch, destroyed_at FROM contacts WHERE contact_id = ?',
      ),
      key: db.prepare<[string, number], { wrapped: Uint8Array }>(
        'SELECT wrapped FROM content_keys WHERE contact_id = ? AND epoch = ?',
      ),
      allKeys: db.prepare<[], KeyRow>(
        'SELECT contact_id, epoch, wrapped FROM content_keys ORDER BY contact_id, epoch',
      ),
      insertContact: db.prepare<[string, number]>(
        'INSERT OR IGNORE INTO contacts (contact_id, current_epoch, created_at) VALUES (?, 0, ?)',
      ),
      insertKey: db.prepare<[string, number, Uint8Array, number]>(
        'INSERT INTO content_keys (contact_id, epoch, wrapped, created_at) VALUES (?, ?, ?, ?)',
      ),
      updateKey: db.prepare<[Uint8Array, string, number]>(
        'UPDATE content_keys SET wrapped = ? WHERE contact_id = ? AND epoch = ?',
      ),
      setEpoch: db.prepare<[number, string]>(
        'UPDATE contacts SET current_epoch = ? WHERE contact_id = ?',
      ),
      deleteKeys: db.prepare<[string]>('DELETE FROM content_keys WHERE contact_id = ?'),
      tombstone: db.prepare<[string, number, number]>(
        `INSERT INTO contacts (contact_id, current_epoch, created_at, destroyed_at) VALUES (?, 0, ?, ?)
         ON CONFLICT (contact_id) DO UPDATE SET destroyed_at = coalesce(destroyed_at, excluded.destroyed_at)`,
      ),
      setCheck: db.prepare<[Uint8Array]>(
        "INSERT OR REPLACE INTO meta (name, value) VALUES ('kek_check', ?)",
      ),
      generations: db.prepare<[], { generation: number; state: string; tainted_at: number | null }>(
        "SELECT generation, state, tainted_at FROM kek_generations WHERE state <> 'destroyed' ORDER BY generation",
      ),
      taint: db.prepare<[number]>(
        "UPDATE kek_generations SET tainted_at = coalesce(tainted_at, ?) WHERE state = 'current'",
      ),
      retire: db.prepare<[number, number]>(
        "UPDATE kek_generations SET state = 'retiring', retired_at = ?, rewrapped = ? WHERE state = 'current'",
      ),
      newGeneration: db.prepare<[number]>(
        "INSERT INTO kek_generations (generation, state, created_at) SELECT max(generation) + 1, 'current', ? FROM kek_generations",
      ),
      destroyedGeneration: db.prepare<[number]>(
        "UPDATE kek_generations SET state = 'destroyed' WHERE generation = ? AND state = 'retiring'",
      ),
      deleteCheck: db.prepare("DELETE FROM meta WHERE name = 'kek_check'"),
      ping: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM meta'),
      oweNotice: db.prepare<[{ contactId: string; now: number }]>(
        `INSERT OR IGNORE INTO destroy_notices (contact_id, owed_since) SELECT @contactId, @now
         WHERE NOT EXISTS (SELECT 1 FROM contacts WHERE contact_id = @contactId AND destroyed_at IS NOT NULL)`,
      ),
      owedNotices: db.prepare<[number], { contact_id: string }>(
        'SELECT contact_id FROM destroy_notices ORDER BY owed_since, contact_id LIMIT ?',
      ),
      settleNotice: db.prepare<[string]>('DELETE FROM destroy_notices WHERE contact_id = ?'),
    };
    this.#notices = new DestroyNotices(
      async (contactId) => {
        await this.#wrapper.destroyContact?.(contactId);
      },
      {
        owed: async (limit) =>
          guard(() => this.#sql.owedNotices.all(limit).map((r) => r.contact_id)),
        settled: async (contactId) => {
          guard(() => this.#sql.settleNotice.run(contactId));
        },
      },
    );
    // Notices a previous run could not send.
    this.#notices.kick();
  }

  #open(): void {
    if (this.#closed) throw new LatchkeyError('KEY_UNAVAILABLE', 'key manager is closed');
  }

  get currentWrapper(): KeyWrapper {
    return this.#wrapper;
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
    return this.#track(this.#getContentKey(contactId, epoch));
  }

  async #getContentKey(contactId: string, epoch?: number): Promise<ContentKey> {
    this.#open();
    checkContactId(contactId);
    checkEpoch(epoch);
    if (guard(() => this.#sql.contact.get(contactId)) === undefined) {
      if (epoch !== undefined && epoch !== 0) throw unknownEpoch();
      await this.#create(contactId);
    }
    this.#open();
    // Read epoch and wrapped key together so a concurrent rotate or destroy is seen whole, and
    // take the wrapper in the same step, so a concurrent rewrap cannot split them.
    const { current, wrapped, want, wrapper } = guard(() =>
      this.#db.transaction(() => {
        const c = this.#sql.contact.get(contactId);
        if (c === undefined) throw unknownContact();
        if (c.destroyed_at !== null) throw destroyed();
        const e = epoch ?? c.current_epoch;
        if (e > c.current_epoch) throw unknownEpoch();
        const k = this.#sql.key.get(contactId, e);
        if (k === undefined) throw unknownEpoch();
        return { current: c.current_epoch, wrapped: k.wrapped, want: e, wrapper: this.#wrapper };
      })(),
    );
    let key: Uint8Array;
    try {
      key = await wrapper.unwrap(wrapped, { contactId, epoch: want, reason: 'fetch' });
    } catch (err) {
      throw unavailable('stored key could not be unwrapped', err);
    }
    return { contactId, epoch: want, currentEpoch: current, key };
  }

  /** A fresh content key wrapped by the current wrapper, and that wrapper's generation. */
  async #fresh(
    contactId: string,
    epoch: number,
    reason: WrapReason,
  ): Promise<{ wrapped: Uint8Array; generation: number }> {
    while (this.#rewrapping !== null) await this.#rewrapping.catch(() => undefined);
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

  #create(contactId: string): Promise<void> {
    const pending = this.#creating.get(contactId);
    if (pending !== undefined) return pending;
    const job = (async () => {
      for (let attempt = 0; attempt < 8; attempt++) {
        const { wrapped, generation } = await this.#fresh(contactId, 0, 'create');
        this.#open();
        const stored = guard(() =>
          this.#db
            .transaction(() => {
              // Wrapped under a wrapper that a rewrap has since replaced: wrap again.
              if (generation !== this.#generation) return false;
              const now = this.#now();
              // Whoever inserts the contact row first also stores epoch 0; a loser reads the winner's.
              if (this.#sql.insertContact.run(contactId, now).changes === 1) {
                this.#sql.insertKey.run(contactId, 0, wrapped, now);
              }
              return true;
            })
            .immediate(),
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
    const c = guard(() => this.#sql.contact.get(contactId));
    if (c === undefined) throw unknownContact();
    if (c.destroyed_at !== null) throw destroyed();
    return c.current_epoch;
  }

  rotate(contactId: string): Promise<number> {
    return this.#track(this.#rotate(contactId));
  }

  async #rotate(contactId: string): Promise<number> {
    this.#open();
    checkContactId(contactId);
    for (let attempt = 0; attempt < 8; attempt++) {
      const c = guard(() => this.#sql.contact.get(contactId));
      if (c === undefined) throw unknownContact();
      if (c.destroyed_at !== null) throw destroyed();
      const next = c.current_epoch + 1;
      if (next > MAX_EPOCH) throw new LatchkeyError('CONFLICT', 'epoch limit reached');
      const { wrapped, generation } = await this.#fresh(contactId, next, 'rotate');
      this.#open();
      const done = guard(() =>
        this.#db
          .transaction(() => {
            const now = this.#sql.contact.get(contactId);
            if (now === undefined) throw unknownContact();
            if (now.destroyed_at !== null) throw destroyed();
            // Someone else rotated while we wrapped (our key is bound to a taken epoch), or
            // the wrapper was replaced: retry.
            if (now.current_epoch !== c.current_epoch || generation !== this.#generation)
              return false;
            this.#sql.insertKey.run(contactId, next, wrapped, this.#now());
            this.#sql.setEpoch.run(next, contactId);
            return true;
          })
          .immediate(),
      );
      if (done) return next;
    }
    throw new LatchkeyError('CONFLICT', 'too many concurrent rotations');
  }

  async destroy(contactId: string): Promise<void> {
    this.#open();
    checkContactId(contactId);
    guard(() => {
      this.#db
        .transaction(() => {
          const now = this.#now();
          // Keys removed: a copy of the file taken before still holds them, wrapped under the
          // current KEK, until that generation is retired (completing the shred).
          if (this.#sql.deleteKeys.run(contactId).changes > 0) this.#sql.taint.run(now);
          // The first tombstone owes the external key manager its notice (before the upsert,
          // which would hide that it is the first).
          if (this.#wrapper.destroyContact !== undefined)
            this.#sql.oweNotice.run({ contactId, now });
          this.#sql.tombstone.run(contactId, now, now);
        })
        .immediate();
      // secure_delete zeroed the freed cells; move that into the main file and empty the WAL so
      // no frame still carries the old wrapped keys. A busy reader only delays this.
      this.#db.pragma('wal_checkpoint(TRUNCATE)');
    });
    this.#notices.kick();
  }

  async owedDestroyNotices(): Promise<string[]> {
    this.#open();
    return guard(() => this.#sql.owedNotices.all(10_000).map((r) => r.contact_id));
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
    const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
    /** `contact/epoch/old wrapped` -> new wrapped, filled in rounds until nothing is missing. */
    const done = new Map<string, Uint8Array>();
    const id = (r: KeyRow): string => `${r.contact_id}/${r.epoch}/${hex(r.wrapped)}`;
    let newCheck: Uint8Array | undefined;
    if (next.checkAtOpen) {
      const probe = randomBytes(32);
      try {
        newCheck = await next.wrap(probe, { ...CHECK_CTX, reason: 'rewrap' });
      } catch (err) {
        throw unavailable('key could not be wrapped', err);
      } finally {
        probe.fill(0);
      }
    }
    for (let round = 0; round < REWRAP_ROUNDS; round++) {
      const rows = guard(() => this.#sql.allKeys.all());
      for (const r of rows) {
        if (done.has(id(r))) continue;
        const ctx = { contactId: r.contact_id, epoch: r.epoch, reason: 'rewrap' as const };
        if (inPlace !== undefined) {
          try {
            done.set(id(r), await inPlace(r.wrapped, ctx));
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
          done.set(id(r), await next.wrap(key, ctx));
        } catch (err) {
          throw unavailable('key could not be wrapped', err);
        } finally {
          key.fill(0);
        }
      }
      this.#open();
      const count = guard(() =>
        this.#db
          .transaction(() => {
            const now = this.#sql.allKeys.all();
            // Another connection added or changed keys meanwhile: wrap those too, then retry.
            if (now.some((r) => !done.has(id(r)))) return -1;
            for (const r of now) {
              const w = done.get(id(r));
              if (w !== undefined) this.#sql.updateKey.run(w, r.contact_id, r.epoch);
            }
            // A wrapper without a check value must not leave the old KEK's one behind.
            if (newCheck !== undefined) this.#sql.setCheck.run(newCheck);
            else this.#sql.deleteCheck.run();
            // The old generation is retired (its KEK still to be destroyed), a new one current.
            if (next !== old) {
              const at = this.#now();
              this.#sql.retire.run(at, now.length);
              this.#sql.newGeneration.run(at);
            }
            return now.length;
          })
          .immediate(),
      );
      if (count >= 0) {
        // Swap in the same synchronous step as the commit: no call sees new bytes with the old
        // wrapper or old bytes with the new one.
        this.#wrapper = next;
        this.#generation++;
        guard(() => this.#db.pragma('wal_checkpoint(TRUNCATE)'));
        if (next !== old) void Promise.allSettled([...this.#inflight]).then(() => old.close());
        return { rewrapped: count };
      }
    }
    throw new LatchkeyError('CONFLICT', 'keys kept changing during the rewrap');
  }

  async keyGeneration(): Promise<KeyGenerationState> {
    this.#open();
    const rows = guard(() => this.#sql.generations.all());
    const current = rows.find((r) => r.state === 'current');
    if (current === undefined)
      throw new LatchkeyError('KEY_UNAVAILABLE', 'key database has no current key generation');
    return {
      generation: current.generation,
      taintedSince: current.tainted_at,
      retiring: rows.filter((r) => r.state === 'retiring').map((r) => r.generation),
    };
  }

  async markDestroyed(generation: number): Promise<void> {
    this.#open();
    guard(() => this.#sql.destroyedGeneration.run(generation));
  }

  async health(): Promise<KeyManagerHealth> {
    const backend = this.#wrapper.backend;
    if (this.#closed) return { status: 'degraded', backend, detail: 'closed' };
    try {
      this.#sql.ping.get();
    } catch (err) {
      return {
        status: 'degraded',
        backend,
        detail: err instanceof Error ? err.message : String(err),
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
    this.#db.close();
    await this.#wrapper.close();
  }
}
