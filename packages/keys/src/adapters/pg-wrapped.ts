/**
 * The wrapped key store on PostgreSQL (issue 9): the same contacts, epochs, wrapped keys and
 * tombstones as the SQLite store (wrapped.ts), shared by several key-service processes. It
 * belongs in a database of its own, reached with a role of its own, never the relay's messages
 * database (docs/operations.md "Key store on PostgreSQL"); opening refuses a database that holds
 * the relay's `messages` table.
 *
 * Concurrency across processes: a first creation inserts the contact row with
 * `ON CONFLICT DO NOTHING` and only the inserter stores epoch 0, so every process reads the one
 * winner's key; a rotation locks the contact row (`FOR UPDATE`) and commits only when the epoch
 * it wrapped for is still the next one; destroy writes the tombstone first (taking the same row
 * lock), then deletes every epoch, so no rotation can slip a key in after it. A read is one
 * statement, so it sees a contact's epoch and wrapped key from one snapshot.
 *
 * Schema: `keys_schema_version` holds the version; migrations run at open, one transaction
 * each, under an advisory lock so that key services starting together migrate once. Only
 * wrapped bytes are stored; PostgreSQL keeps deleted rows until VACUUM and in its WAL and
 * backups, so shredding a contact relies on its wrapped key being useless without the KEK,
 * which completing the shred destroys (`keys_kek_generations`, as in wrapped.ts: a destroy that
 * removed keys taints the current generation, a rewrap retires it).
 */
import pg from 'pg';
import { AuthenticationError } from '@latchkey/crypto/aead';
import { randomBytes } from '@latchkey/crypto/random';
import { LatchkeyError } from '@latchkey/protocol';
import type { ContentKey, KeyManagerHealth } from '../key-manager.ts';
import type { KekGenerations, KeyWrapper, WrapReason } from '../key-wrapper.ts';
import { DestroyNotices } from './destroy-notices.ts';
import {
  checkContactId,
  checkEpoch,
  isGenerations,
  wrapFreshContentKey,
  type KeyGenerationState,
  type WrappedKeyManager,
} from './wrapped.ts';

/** Schema version this code writes (`keys_schema_version`). */
export const PG_KEYS_SCHEMA_VERSION = 3;

/** Table names carry a `keys_` prefix so that they can never be mistaken for the relay's. */
const MIGRATIONS: readonly string[] = [
  // 0 -> 1
  `CREATE TABLE keys_meta (
     name  TEXT PRIMARY KEY,
     value BYTEA NOT NULL
   );
   CREATE TABLE keys_contacts (
     contact_id    TEXT PRIMARY KEY,
     current_epoch INTEGER NOT NULL CHECK (current_epoch >= 0),
     created_at    BIGINT NOT NULL,
     destroyed_at  BIGINT
   );
   CREATE TABLE keys_content_keys (
     contact_id TEXT NOT NULL REFERENCES keys_contacts (contact_id),
     epoch      INTEGER NOT NULL CHECK (epoch >= 0),
     wrapped    BYTEA NOT NULL,
     created_at BIGINT NOT NULL,
     PRIMARY KEY (contact_id, epoch)
   );`,
  // 1 -> 2: key generations. A store that already holds tombstones had shreds under its one KEK.
  `CREATE TABLE keys_kek_generations (
     generation INTEGER PRIMARY KEY,
     state      TEXT NOT NULL CHECK (state IN ('current', 'retiring', 'destroyed')),
     created_at BIGINT NOT NULL,
     tainted_at BIGINT,
     retired_at BIGINT,
     rewrapped  INTEGER
   );
   CREATE UNIQUE INDEX keys_kek_generations_one_current ON keys_kek_generations (state) WHERE state = 'current';
   INSERT INTO keys_kek_generations (generation, state, created_at, tainted_at)
     VALUES (1, 'current', (extract(epoch FROM now()) * 1000)::bigint,
             (SELECT min(destroyed_at) FROM keys_contacts WHERE destroyed_at IS NOT NULL));`,
  // 2 -> 3: destroy notices owed to an external key manager (destroy-notices.ts).
  `CREATE TABLE keys_destroy_notices (
     contact_id TEXT PRIMARY KEY,
     owed_since BIGINT NOT NULL
   );`,
];

/** Advisory lock of the key store's migrations ("lkkeys" in ASCII), distinct from the relay's. */
const MIGRATION_LOCK = 0x6c6b6b657973;
/** Same as wrapped.ts: the dot makes it impossible as a contact id. */
const CHECK_CTX = { contactId: 'latchkey.kek-check', epoch: 0 } as const;
const MAX_EPOCH = 2 ** 31 - 1;
const REWRAP_ROUNDS = 8;
/** SQLSTATEs worth retrying a transaction for: serialisation failure, deadlock. */
const RETRY_CODES = new Set(['40001', '40P01']);

/** BIGINT columns come back as numbers: every value stored (ms times) is a safe integer. */
const TYPES = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === 20
      ? (v: string) => Number(v)
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

export interface PgWrappedKeyManagerOptions {
  /** `postgres://user@host:port/keys`: a database (and role) of its own, not the messages one. */
  url: string;
  /**
   * Holds the KEK: a wrapper, or the KEK's generations, of which the store's current one is
   * opened. The key manager owns the wrapper from now on and closes it on close().
   */
  wrapper: KeyWrapper | KekGenerations;
  /** Connections in the pool (default 5). */
  maxConnections?: number;
  /** Clock in Unix milliseconds, for tests. */
  now?: () => number;
  /** Message of the KEY_UNAVAILABLE thrown when the KEK does not match the store. */
  mismatchMessage?: string;
}

/**
 * A storage failure as KEY_UNAVAILABLE. The detail (logs only) keeps the SQLSTATE and the
 * constraint; PostgreSQL's message text may quote values, so it stays out.
 */
function unavailable(message: string, err: unknown): LatchkeyError {
  if (LatchkeyError.is(err)) return err;
  if (err instanceof AuthenticationError)
    return new LatchkeyError('KEY_UNAVAILABLE', message, {
      cause: err,
      detail: 'authentication failed',
    });
  const e = err as { code?: unknown; constraint?: unknown; name?: unknown } | undefined;
  const detail =
    err instanceof pg.DatabaseError
      ? `${String(e?.code)}${e?.constraint ? ` ${String(e.constraint)}` : ''}`
      : err instanceof Error
        ? `${err.name}${e?.code ? ` ${String(e.code)}` : ''}`
        : typeof err;
  return new LatchkeyError('KEY_UNAVAILABLE', message, { cause: err, detail });
}

const destroyed = (): LatchkeyError =>
  new LatchkeyError('NOT_FOUND', 'contact keys were destroyed');
const unknownContact = (): LatchkeyError => new LatchkeyError('NOT_FOUND', 'unknown contact');
const unknownEpoch = (): LatchkeyError => new LatchkeyError('NOT_FOUND', 'unknown epoch');

async function migrate(pool: pg.Pool): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    try {
      const shared = await client.query<{ t: string | null }>(
        "SELECT to_regclass('messages')::text AS t",
      );
      if ((shared.rows[0]?.t ?? null) !== null) {
        throw new LatchkeyError(
          'KEY_UNAVAILABLE',
          'the key store must not share the messages database',
          {
            detail: 'found the relay table "messages"; give the key store a database of its own',
          },
        );
      }
      await client.query(
        'CREATE TABLE IF NOT EXISTS keys_schema_version (version INTEGER NOT NULL)',
      );
      const r = await client.query<{ version: number }>('SELECT version FROM keys_schema_version');
      if (r.rows.length === 0)
        await client.query('INSERT INTO keys_schema_version (version) VALUES (0)');
      const version = r.rows[0]?.version ?? 0;
      if (version > MIGRATIONS.length) {
        throw new LatchkeyError('KEY_UNAVAILABLE', 'key database was written by a newer version', {
          detail: `keys_schema_version ${version}, this build knows ${MIGRATIONS.length}`,
        });
      }
      for (let v = version; v < MIGRATIONS.length; v++) {
        const sql = MIGRATIONS[v];
        if (sql === undefined) throw new Error(`no migration from version ${v}`);
        await client.query('BEGIN');
        try {
          await client.query(sql);
          await client.query('UPDATE keys_schema_version SET version = $1', [v + 1]);
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK');
          throw err;
        }
      }
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]);
    }
  } finally {
    client.release();
  }
}

/**
 * In-process gate between ordinary calls (shared) and the last step of a rewrap (exclusive),
 * so that no call pairs stored bytes with the other wrapper while the rewrap commits and swaps.
 */
class Gate {
  #readers = 0;
  #writer: Promise<void> | null = null;
  #drained: (() => void) | null = null;

  async shared<T>(fn: () => Promise<T>): Promise<T> {
    while (this.#writer !== null) await this.#writer;
    this.#readers++;
    try {
      return await fn();
    } finally {
      this.#readers--;
      if (this.#readers === 0) this.#drained?.();
    }
  }

  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    while (this.#writer !== null) await this.#writer;
    let release = (): void => undefined;
    this.#writer = new Promise<void>((r) => {
      release = r;
    });
    try {
      if (this.#readers > 0) {
        await new Promise<void>((r) => {
          this.#drained = r;
        });
      }
      this.#drained = null;
      return await fn();
    } finally {
      this.#writer = null;
      release();
    }
  }
}

/**
 * Opens (creating the schema when missing) the wrapped key store in the PostgreSQL database at
 * `opts.url`, whose keys `opts.wrapper` wraps. With a local wrapper (`checkAtOpen`) it checks
 * that the KEK is the one the store was created with. On failure the wrapper is closed.
 * @throws LatchkeyError KEY_UNAVAILABLE when the database is unreachable, holds the relay's
 *   messages, has a newer schema, or the KEK does not match the store.
 */
export async function openPgWrappedKeyManager(
  opts: PgWrappedKeyManagerOptions,
): Promise<WrappedKeyManager> {
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.maxConnections ?? 5,
    connectionTimeoutMillis: 10_000,
    types: TYPES,
  });
  // An idle client's network error must not crash the process; the next query reports it.
  pool.on('error', () => undefined);
  let wrapper: KeyWrapper | undefined = isGenerations(opts.wrapper) ? undefined : opts.wrapper;
  try {
    await migrate(pool);
    if (isGenerations(opts.wrapper)) {
      const r = await pool.query<{ generation: number }>(
        "SELECT generation FROM keys_kek_generations WHERE state = 'current'",
      );
      wrapper = await opts.wrapper.wrapper(r.rows[0]?.generation ?? 1, { create: false });
    }
    if (wrapper === undefined) throw new Error('no wrapper');
    if (wrapper.checkAtOpen) {
      await checkKek(
        pool,
        wrapper,
        opts.mismatchMessage ?? 'the key-encryption key does not match this key database',
      );
    }
  } catch (err) {
    await pool.end().catch(() => undefined);
    await wrapper?.close();
    throw unavailable('cannot open key database', err);
  }
  return new PgWrappedStore(pool, wrapper, opts.now ?? Date.now);
}

async function checkKek(pool: pg.Pool, wrapper: KeyWrapper, mismatch: string): Promise<void> {
  const ctx = { ...CHECK_CTX, reason: 'create' as WrapReason };
  const probe = randomBytes(32);
  const fresh = await wrapper.wrap(probe, ctx).finally(() => probe.fill(0));
  await pool.query(
    "INSERT INTO keys_meta (name, value) VALUES ('kek_check', $1) ON CONFLICT (name) DO NOTHING",
    [Buffer.from(fresh)],
  );
  const row = await pool.query<{ value: Buffer }>(
    "SELECT value FROM keys_meta WHERE name = 'kek_check'",
  );
  const value = row.rows[0]?.value;
  if (value === undefined) throw new Error('kek_check missing');
  try {
    (await wrapper.unwrap(value, { ...ctx, reason: 'fetch' })).fill(0);
  } catch (err) {
    if (err instanceof AuthenticationError) throw new LatchkeyError('KEY_UNAVAILABLE', mismatch);
    throw err;
  }
}

interface ReadRow {
  current_epoch: number;
  destroyed_at: number | null;
  wrapped: Buffer | null;
}

interface KeyRow {
  contact_id: string;
  epoch: number;
  wrapped: Buffer;
}

class PgWrappedStore implements WrappedKeyManager {
  readonly #pool: pg.Pool;
  #wrapper: KeyWrapper;
  /** Bumped when the wrapper is replaced; a write wrapped under an older one retries. */
  #generation = 0;
  readonly #now: () => number;
  #closed = false;
  /** In-process single flight of first creations; the primary key covers other processes. */
  readonly #creating = new Map<string, Promise<void>>();
  readonly #inflight = new Set<Promise<unknown>>();
  #rewrapping: Promise<unknown> | null = null;
  readonly #gate = new Gate();
  readonly #notices: DestroyNotices;

  constructor(pool: pg.Pool, wrapper: KeyWrapper, now: () => number) {
    this.#pool = pool;
    this.#wrapper = wrapper;
    this.#now = now;
    this.#notices = new DestroyNotices(
      async (contactId) => {
        await this.#wrapper.destroyContact?.(contactId);
      },
      {
        owed: (limit) => this.#owed(limit),
        settled: async (contactId) => {
          await this.#query('DELETE FROM keys_destroy_notices WHERE contact_id = $1', [contactId]);
        },
      },
    );
    // Notices a previous run (or another key service sharing the store) could not send.
    this.#notices.kick();
  }

  get currentWrapper(): KeyWrapper {
    return this.#wrapper;
  }

  async #owed(limit: number): Promise<string[]> {
    const rows = await this.#query<{ contact_id: string }>(
      'SELECT contact_id FROM keys_destroy_notices ORDER BY owed_since, contact_id LIMIT $1',
      [limit],
    );
    return rows.map((r) => r.contact_id);
  }

  async owedDestroyNotices(): Promise<string[]> {
    this.#open();
    return this.#owed(10_000);
  }

  async flushDestroyNotices(): Promise<void> {
    this.#open();
    this.#notices.kick();
    await this.#notices.idle();
  }

  #open(): void {
    if (this.#closed) throw new LatchkeyError('KEY_UNAVAILABLE', 'key manager is closed');
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#inflight.add(p);
    const done = (): void => {
      this.#inflight.delete(p);
    };
    p.then(done, done);
    return p;
  }

  /** One statement; anything but a LatchkeyError becomes KEY_UNAVAILABLE. */
  async #query<R extends pg.QueryResultRow>(sql: string, params: unknown[]): Promise<R[]> {
    try {
      return (await this.#pool.query<R>(sql, params)).rows;
    } catch (err) {
      throw unavailable('key store unavailable', err);
    }
  }

  /** A transaction, retried on deadlock or serialisation failure. */
  async #tx<T>(fn: (q: pg.PoolClient) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      let client: pg.PoolClient;
      try {
        client = await this.#pool.connect();
      } catch (err) {
        throw unavailable('key store unavailable', err);
      }
      try {
        await client.query('BEGIN');
        const out = await fn(client);
        await client.query('COMMIT');
        return out;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        const code = (err as { code?: unknown }).code;
        if (
          !LatchkeyError.is(err) &&
          typeof code === 'string' &&
          RETRY_CODES.has(code) &&
          attempt < 4
        )
          continue;
        throw unavailable('key store unavailable', err);
      } finally {
        client.release();
      }
    }
  }

  getContentKey(contactId: string, epoch?: number): Promise<ContentKey> {
    return this.#track(this.#getContentKey(contactId, epoch));
  }

  async #getContentKey(contactId: string, epoch?: number): Promise<ContentKey> {
    this.#open();
    checkContactId(contactId);
    checkEpoch(epoch);
    // Read epoch and wrapped key in one statement (one snapshot), and take the wrapper inside
    // the same gate, so that a rewrap cannot commit and swap in between.
    const read = (): Promise<{ row: ReadRow | undefined; wrapper: KeyWrapper }> =>
      this.#gate.shared(async () => {
        const [row] = await this.#query<ReadRow>(
          `SELECT c.current_epoch, c.destroyed_at, k.wrapped
           FROM keys_contacts c
           LEFT JOIN keys_content_keys k ON k.contact_id = c.contact_id AND k.epoch = coalesce($2::integer, c.current_epoch)
           WHERE c.contact_id = $1`,
          [contactId, epoch ?? null],
        );
        return { row, wrapper: this.#wrapper };
      });
    let { row, wrapper } = await read();
    if (row === undefined) {
      if (epoch !== undefined && epoch !== 0) throw unknownEpoch();
      await this.#create(contactId);
      this.#open();
      ({ row, wrapper } = await read());
    }
    if (row === undefined) throw unknownContact();
    if (row.destroyed_at !== null) throw destroyed();
    const want = epoch ?? row.current_epoch;
    if (want > row.current_epoch || row.wrapped === null) throw unknownEpoch();
    let key: Uint8Array;
    try {
      key = await wrapper.unwrap(row.wrapped, { contactId, epoch: want, reason: 'fetch' });
    } catch (err) {
      throw unavailable('stored key could not be unwrapped', err);
    }
    return { contactId, epoch: want, currentEpoch: row.current_epoch, key };
  }

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
        const stored = await this.#gate.shared(() =>
          this.#tx(async (q) => {
            // Wrapped under a wrapper that a rewrap has since replaced: wrap again.
            if (generation !== this.#generation) return false;
            const now = this.#now();
            // Whoever inserts the contact row stores epoch 0; a concurrent inserter waits on the
            // primary key until this commits, then inserts nothing and reads the winner's key.
            const won = await q.query(
              `INSERT INTO keys_contacts (contact_id, current_epoch, created_at) VALUES ($1, 0, $2)
               ON CONFLICT (contact_id) DO NOTHING RETURNING contact_id`,
              [contactId, now],
            );
            if (won.rowCount === 1) {
              await q.query(
                'INSERT INTO keys_content_keys (contact_id, epoch, wrapped, created_at) VALUES ($1, 0, $2, $3)',
                [contactId, Buffer.from(wrapped), now],
              );
            }
            return true;
          }),
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
    const [c] = await this.#query<{ current_epoch: number; destroyed_at: number | null }>(
      'SELECT current_epoch, destroyed_at FROM keys_contacts WHERE contact_id = $1',
      [contactId],
    );
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
    for (let attempt = 0; attempt < 16; attempt++) {
      const current = await this.currentEpoch(contactId);
      const next = current + 1;
      if (next > MAX_EPOCH) throw new LatchkeyError('CONFLICT', 'epoch limit reached');
      const { wrapped, generation } = await this.#fresh(contactId, next, 'rotate');
      this.#open();
      const done = await this.#gate.shared(() =>
        this.#tx(async (q) => {
          const locked = await q.query<{ current_epoch: number; destroyed_at: number | null }>(
            'SELECT current_epoch, destroyed_at FROM keys_contacts WHERE contact_id = $1 FOR UPDATE',
            [contactId],
          );
          const now = locked.rows[0];
          if (now === undefined) throw unknownContact();
          if (now.destroyed_at !== null) throw destroyed();
          // Another process rotated while we wrapped (our key is bound to a taken epoch), or the
          // wrapper was replaced: retry.
          if (now.current_epoch !== current || generation !== this.#generation) return false;
          await q.query(
            'INSERT INTO keys_content_keys (contact_id, epoch, wrapped, created_at) VALUES ($1, $2, $3, $4)',
            [contactId, next, Buffer.from(wrapped), this.#now()],
          );
          await q.query('UPDATE keys_contacts SET current_epoch = $1 WHERE contact_id = $2', [
            next,
            contactId,
          ]);
          return true;
        }),
      );
      if (done) return next;
    }
    throw new LatchkeyError('CONFLICT', 'too many concurrent rotations');
  }

  async destroy(contactId: string): Promise<void> {
    this.#open();
    checkContactId(contactId);
    await this.#tx(async (q) => {
      const now = this.#now();
      // The first tombstone owes the external key manager its notice; the row lock taken by
      // the tombstone below makes "first" exact between concurrent destroys.
      await q.query('SELECT 1 FROM keys_contacts WHERE contact_id = $1 FOR UPDATE', [contactId]);
      if (this.#wrapper.destroyContact !== undefined) {
        await q.query(
          `INSERT INTO keys_destroy_notices (contact_id, owed_since) SELECT $1::text, $2::bigint
           WHERE NOT EXISTS (SELECT 1 FROM keys_contacts WHERE contact_id = $1 AND destroyed_at IS NOT NULL)
           ON CONFLICT (contact_id) DO NOTHING`,
          [contactId, now],
        );
      }
      // Tombstone first: it takes the contact row lock, so a rotation either committed before
      // (and its key is deleted below) or sees the tombstone.
      await q.query(
        `INSERT INTO keys_contacts (contact_id, current_epoch, created_at, destroyed_at) VALUES ($1, 0, $2, $2)
         ON CONFLICT (contact_id) DO UPDATE SET destroyed_at = coalesce(keys_contacts.destroyed_at, excluded.destroyed_at)`,
        [contactId, now],
      );
      const gone = await q.query('DELETE FROM keys_content_keys WHERE contact_id = $1', [
        contactId,
      ]);
      // Keys removed: dead tuples, the WAL and backups still hold them, wrapped under the
      // current KEK, until that generation is retired (completing the shred).
      if ((gone.rowCount ?? 0) > 0) {
        await q.query(
          "UPDATE keys_kek_generations SET tainted_at = coalesce(tainted_at, $1) WHERE state = 'current'",
          [now],
        );
      }
    });
    this.#notices.kick();
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
    // The same wrapper again: re-wrapped in place by the backend (see wrapped.ts).
    const inPlace = next === old ? old.rewrap?.bind(old) : undefined;
    if (next === old && inPlace === undefined)
      throw new LatchkeyError(
        'BAD_REQUEST',
        `the ${old.backend} key manager cannot re-wrap in place`,
      );
    const id = (r: KeyRow): string => `${r.contact_id}/${r.epoch}/${r.wrapped.toString('hex')}`;
    const done = new Map<string, Uint8Array>();
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
    const all =
      'SELECT contact_id, epoch, wrapped FROM keys_content_keys ORDER BY contact_id, epoch';
    for (let round = 0; round < REWRAP_ROUNDS; round++) {
      for (const r of await this.#query<KeyRow>(all, [])) {
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
      const count = await this.#gate.exclusive(async () => {
        const n = await this.#tx(async (q) => {
          // Other processes may read meanwhile but not add, change or delete keys.
          await q.query('LOCK TABLE keys_content_keys IN EXCLUSIVE MODE');
          const now = (await q.query<KeyRow>(all)).rows;
          if (now.some((r) => !done.has(id(r)))) return -1;
          for (const r of now) {
            const w = done.get(id(r));
            if (w !== undefined) {
              await q.query(
                'UPDATE keys_content_keys SET wrapped = $1 WHERE contact_id = $2 AND epoch = $3',
                [Buffer.from(w), r.contact_id, r.epoch],
              );
            }
          }
          if (newCheck !== undefined) {
            await q.query(
              "INSERT INTO keys_meta (name, value) VALUES ('kek_check', $1) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
              [Buffer.from(newCheck)],
            );
          } else {
            await q.query("DELETE FROM keys_meta WHERE name = 'kek_check'");
          }
          // The old generation is retired (its KEK still to be destroyed), a new one current.
          if (next === old) return now.length;
          const at = this.#now();
          await q.query(
            "UPDATE keys_kek_generations SET state = 'retiring', retired_at = $1, rewrapped = $2 WHERE state = 'current'",
            [at, now.length],
          );
          await q.query(
            "INSERT INTO keys_kek_generations (generation, state, created_at) SELECT max(generation) + 1, 'current', $1 FROM keys_kek_generations",
            [at],
          );
          return now.length;
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
    const rows = await this.#query<{
      generation: number;
      state: string;
      tainted_at: number | null;
    }>(
      "SELECT generation, state, tainted_at FROM keys_kek_generations WHERE state <> 'destroyed' ORDER BY generation",
      [],
    );
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
    await this.#query(
      "UPDATE keys_kek_generations SET state = 'destroyed' WHERE generation = $1 AND state = 'retiring'",
      [generation],
    );
  }

  async health(): Promise<KeyManagerHealth> {
    const backend = this.#wrapper.backend;
    if (this.#closed) return { status: 'degraded', backend, detail: 'closed' };
    try {
      await this.#pool.query('SELECT 1');
    } catch (err) {
      return {
        status: 'degraded',
        backend,
        detail: unavailable('key store unavailable', err).detail ?? 'unreachable',
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
    await this.#pool.end().catch(() => undefined);
    await this.#wrapper.close();
  }
}
