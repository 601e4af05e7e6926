/**
 * The internal key manager: content keys in a SQLite file of their own (never the relay's
 * message database), each stored only wrapped by a key-encryption key derived from the master
 * key and bound to its contact id and epoch (DESIGN.md "Key hierarchy"; wrapping per
 * @latchkey/crypto/wrap, AES-256-GCM). WAL with synchronous=FULL so an acknowledged key
 * survives a power cut; secure_delete plus a WAL checkpoint on destroy so shredded wrapped keys
 * do not linger in free pages or the log.
 */
import { chmodSync, closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { AuthenticationError } from '@latchkey/crypto/aead';
import { randomBytes } from '@latchkey/crypto/random';
import {
  deriveKek,
  generateContentKey,
  unwrapContentKey,
  wrapContentKey,
} from '@latchkey/crypto/wrap';
import { Epoch, Id, LatchkeyError } from '@latchkey/protocol';
import type { ContentKey, KeyManager, KeyManagerHealth } from '../key-manager.ts';

/** Schema version stored in `PRAGMA user_version`; each step below migrates from the previous. */
export const INTERNAL_SCHEMA_VERSION = 1;

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
];

/**
 * Wrapping context of the key-check value. The dot makes it impossible as a contact id, so it
 * can never collide with a real contact's wrapped key.
 */
const CHECK_CTX = { contactId: 'latchkey.kek-check', epoch: 0 } as const;
const MAX_EPOCH = 2 ** 31 - 1;

export interface InternalKeyManagerOptions {
  /** The SQLite file, e.g. `<dataDir>/keys/keys.db`. Missing directories are created 0700. */
  path: string;
  /** 32-byte master key (see resolveMasterKey). The KEK is derived from it with deriveKek. */
  masterKey: Uint8Array;
  /** Clock in Unix milliseconds, for tests. */
  now?: () => number;
}

interface ContactRow {
  current_epoch: number;
  destroyed_at: number | null;
}

function unavailable(message: string, err: unknown): LatchkeyError {
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

function checkContactId(contactId: string): void {
  if (!Id.safeParse(contactId).success)
    throw new LatchkeyError('BAD_REQUEST', 'invalid contact id');
}

function checkEpoch(epoch: number | undefined): void {
  if (epoch !== undefined && !Epoch.safeParse(epoch).success) {
    throw new LatchkeyError('BAD_REQUEST', 'invalid epoch');
  }
}

const destroyed = (): LatchkeyError =>
  new LatchkeyError('NOT_FOUND', 'contact keys were destroyed');
const unknownContact = (): LatchkeyError => new LatchkeyError('NOT_FOUND', 'unknown contact');
const unknownEpoch = (): LatchkeyError => new LatchkeyError('NOT_FOUND', 'unknown epoch');

/** Creates the file 0600 before SQLite does (its -wal and -shm files inherit that mode). */
function preparePrivateFile(path: string): void {
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

/**
 * Opens (creating when missing) the internal key store at `opts.path` and checks that the
 * master key is the one the store was created with.
 * @throws LatchkeyError KEY_UNAVAILABLE when the master key does not match the store, the
 *   schema is newer than this build, or the file cannot be opened.
 * @throws RangeError when the master key is not 32 bytes.
 */
export async function openInternalKeyManager(opts: InternalKeyManagerOptions): Promise<KeyManager> {
  if (!(opts.masterKey instanceof Uint8Array) || opts.masterKey.length !== 32) {
    throw new RangeError('master key must be 32 bytes');
  }
  let db: Database.Database;
  try {
    preparePrivateFile(opts.path);
    db = new Database(opts.path);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    db.pragma('secure_delete = ON');
    db.pragma('busy_timeout = 5000');
    migrate(db);
  } catch (err) {
    if (LatchkeyError.is(err)) throw err;
    throw unavailable('cannot open key database', err);
  }
  const kek = deriveKek(opts.masterKey);
  try {
    const fresh = await wrapContentKey(kek, randomBytes(32), CHECK_CTX);
    db.prepare("INSERT OR IGNORE INTO meta (name, value) VALUES ('kek_check', ?)").run(fresh);
    const row = db
      .prepare<[], { value: Uint8Array }>("SELECT value FROM meta WHERE name = 'kek_check'")
      .get();
    if (row === undefined) throw new Error('kek_check missing');
    (await unwrapContentKey(kek, row.value, CHECK_CTX)).fill(0);
  } catch (err) {
    db.close();
    kek.fill(0);
    if (err instanceof AuthenticationError) {
      throw new LatchkeyError(
        'KEY_UNAVAILABLE',
        'the master key does not match this key database',
        {
          detail: opts.path,
        },
      );
    }
    throw unavailable('cannot open key database', err);
  }
  return new InternalKeyManager(db, kek, opts.now ?? Date.now);
}

class InternalKeyManager implements KeyManager {
  readonly #db: Database.Database;
  readonly #kek: Uint8Array;
  readonly #now: () => number;
  #closed = false;
  /** In-process single flight of first creations; the database constraint covers other processes. */
  readonly #creating = new Map<string, Promise<void>>();
  readonly #sql;

  constructor(db: Database.Database, kek: Uint8Array, now: () => number) {
    this.#db = db;
    this.#kek = kek;
    this.#now = now;
    this.#sql = {
      contact: db.prepare<[string], ContactRow>(
        'SELECT current_epoch, destroyed_at FROM contacts WHERE contact_id = ?',
      ),
      key: db.prepare<[string, number], { wrapped: Uint8Array }>(
        'SELECT wrapped FROM content_keys WHERE contact_id = ? AND epoch = ?',
      ),
      insertContact: db.prepare<[string, number]>(
        'INSERT OR IGNORE INTO contacts (contact_id, current_epoch, created_at) VALUES (?, 0, ?)',
      ),
      insertKey: db.prepare<[string, number, Uint8Array, number]>(
        'INSERT INTO content_keys (contact_id, epoch, wrapped, created_at) VALUES (?, ?, ?, ?)',
      ),
      setEpoch: db.prepare<[number, string]>(
        'UPDATE contacts SET current_epoch = ? WHERE contact_id = ?',
      ),
      deleteKeys: db.prepare<[string]>('DELETE FROM content_keys WHERE contact_id = ?'),
      tombstone: db.prepare<[string, number, number]>(
        `INSERT INTO contacts (contact_id, current_epoch, created_at, destroyed_at) VALUES (?, 0, ?, ?)
         ON CONFLICT (contact_id) DO UPDATE SET destroyed_at = coalesce(destroyed_at, excluded.destroyed_at)`,
      ),
      ping: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM meta'),
    };
  }

  #open(): void {
    if (this.#closed) throw new LatchkeyError('KEY_UNAVAILABLE', 'key manager is closed');
  }

  async getContentKey(contactId: string, epoch?: number): Promise<ContentKey> {
    this.#open();
    checkContactId(contactId);
    checkEpoch(epoch);
    if (guard(() => this.#sql.contact.get(contactId)) === undefined) {
      if (epoch !== undefined && epoch !== 0) throw unknownEpoch();
      await this.#create(contactId);
    }
    // Read epoch and wrapped key together so a concurrent rotate or destroy is seen whole.
    const { current, wrapped, want } = guard(() =>
      this.#db.transaction(() => {
        const c = this.#sql.contact.get(contactId);
        if (c === undefined) throw unknownContact();
        if (c.destroyed_at !== null) throw destroyed();
        const e = epoch ?? c.current_epoch;
        if (e > c.current_epoch) throw unknownEpoch();
        const k = this.#sql.key.get(contactId, e);
        if (k === undefined) throw unknownEpoch();
        return { current: c.current_epoch, wrapped: k.wrapped, want: e };
      })(),
    );
    let key: Uint8Array;
    try {
      key = await unwrapContentKey(this.#kek, wrapped, { contactId, epoch: want });
    } catch (err) {
      throw unavailable('stored key could not be unwrapped', err);
    }
    return { contactId, epoch: want, currentEpoch: current, key };
  }

  #create(contactId: string): Promise<void> {
    const pending = this.#creating.get(contactId);
    if (pending !== undefined) return pending;
    const job = (async () => {
      const key = generateContentKey();
      let wrapped: Uint8Array;
      try {
        wrapped = await wrapContentKey(this.#kek, key, { contactId, epoch: 0 });
      } catch (err) {
        throw unavailable('key could not be wrapped', err);
      } finally {
        key.fill(0);
      }
      this.#open();
      guard(() =>
        this.#db
          .transaction(() => {
            const now = this.#now();
            // Whoever inserts the contact row first also stores epoch 0; a loser reads the winner's.
            if (this.#sql.insertContact.run(contactId, now).changes === 1) {
              this.#sql.insertKey.run(contactId, 0, wrapped, now);
            }
          })
          .immediate(),
      );
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

  async rotate(contactId: string): Promise<number> {
    this.#open();
    checkContactId(contactId);
    for (let attempt = 0; attempt < 8; attempt++) {
      const c = guard(() => this.#sql.contact.get(contactId));
      if (c === undefined) throw unknownContact();
      if (c.destroyed_at !== null) throw destroyed();
      const next = c.current_epoch + 1;
      if (next > MAX_EPOCH) throw new LatchkeyError('CONFLICT', 'epoch limit reached');
      const key = generateContentKey();
      let wrapped: Uint8Array;
      try {
        wrapped = await wrapContentKey(this.#kek, key, { contactId, epoch: next });
      } catch (err) {
        throw unavailable('key could not be wrapped', err);
      } finally {
        key.fill(0);
      }
      this.#open();
      const done = guard(() =>
        this.#db
          .transaction(() => {
            const now = this.#sql.contact.get(contactId);
            if (now === undefined) throw unknownContact();
            if (now.destroyed_at !== null) throw destroyed();
            // Someone else rotated while we wrapped: our key is bound to a taken epoch, so retry.
            if (now.current_epoch !== c.current_epoch) return false;
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
          this.#sql.deleteKeys.run(contactId);
          const now = this.#now();
          this.#sql.tombstone.run(contactId, now, now);
        })
        .immediate();
      // secure_delete zeroed the freed cells; move that into the main file and empty the WAL so
      // no frame still carries the old wrapped keys. A busy reader only delays this.
      this.#db.pragma('wal_checkpoint(TRUNCATE)');
    });
  }

  async health(): Promise<KeyManagerHealth> {
    if (this.#closed) return { status: 'degraded', backend: 'internal', detail: 'closed' };
    try {
      this.#sql.ping.get();
      return { status: 'ok', backend: 'internal' };
    } catch (err) {
      return {
        status: 'degraded',
        backend: 'internal',
        detail: err instanceof Error ? err.message : String(err),
      };
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([...this.#creating.values()]);
    this.#db.close();
    this.#kek.fill(0);
  }
}
