/**
 * The wrapped key store's tables on PostgreSQL (issue 9): the same contacts, epochs, wrapped
 * keys and tombstones as the SQLite tables (sqlite.ts), shared by several key-service processes;
 * the store's logic is key-store.ts. It belongs in a database of its own, reached with a role
 * of its own, never the relay's messages database (docs/operations.md "Key store on
 * PostgreSQL"); opening refuses a database that holds the relay's `messages` table.
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
 * which completing the shred destroys (`keys_kek_generations`: a destroy that removed keys
 * taints the current generation, a rewrap retires it).
 */
import pg from 'pg';
import { AuthenticationError } from '@latchkey/crypto/aead';
import {
  migratePostgres,
  openPool,
  transaction,
  type PgClient,
  type PgPool,
} from '@latchkey/storage/postgres';
import { LatchkeyError } from '@latchkey/protocol';
import { openKeyStore } from './open-store.ts';
import { MIGRATIONS, PG_KEYS_SCHEMA_VERSION } from './postgres-schema.ts';

export { PG_KEYS_SCHEMA_VERSION };
import {
  isGenerations,
  type KeyStoreOptions,
  type WrappedKeyManager,
} from './wrapped-key-manager.ts';
import {
  contactOf,
  keyRowOf,
  type ContactSql,
  destroyed,
  rewrapId,
  unknownContact,
  type ContactRow,
  type GenerationRow,
  type KeyRow,
  type KeyTable,
  type ReadRow,
  type RewrapCommit,
} from './key-table.ts';

/** Advisory lock of the key store's migrations ("lkkeys" in ASCII), distinct from the relay's. */
const MIGRATION_LOCK = 0x6c6b6b657973;
export interface PgWrappedKeyManagerOptions extends KeyStoreOptions {
  /** `postgres://user@host:port/keys`: a database (and role) of its own, not the messages one. */
  url: string;
  /** Connections in the pool (default 5). */
  maxConnections?: number;
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
  const pool = openPool({ url: opts.url, max: opts.maxConnections ?? 5 });
  try {
    await migrate(pool);
  } catch (err) {
    await pool.end().catch(() => undefined);
    if (!isGenerations(opts.wrapper)) await opts.wrapper.close();
    throw unavailable('cannot open key database', err);
  }
  return openKeyStore(new PgKeyTable(pool), { ...opts, where: 'the PostgreSQL key store' });
}

/** Brings the schema up to date under the key store's advisory lock, refusing a relay database. */
async function migrate(pool: PgPool): Promise<void> {
  await migratePostgres(pool, {
    lock: MIGRATION_LOCK,
    versionTable: 'keys_schema_version',
    steps: MIGRATIONS,
    what: 'the PostgreSQL key store',
    code: 'KEY_UNAVAILABLE',
    check: async (q) => {
      const shared = await q.query<{ t: string | null }>(
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
    },
  });
}

const ALL_KEYS =
  'SELECT contact_id, epoch, wrapped FROM keys_content_keys ORDER BY contact_id, epoch';

class PgKeyTable implements KeyTable {
  readonly #pool: PgPool;

  constructor(pool: PgPool) {
    this.#pool = pool;
  }

  /** One statement; anything but a LatchkeyError becomes KEY_UNAVAILABLE. */
  async #query<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    try {
      return (await this.#pool.query<R>(sql, params)).rows;
    } catch (err) {
      throw unavailable('key store unavailable', err);
    }
  }

  /** A transaction, retried on deadlock or serialisation failure (@latchkey/storage). */
  async #tx<T>(fn: (q: PgClient) => Promise<T>): Promise<T> {
    try {
      return await transaction(this.#pool, fn);
    } catch (err) {
      throw unavailable('key store unavailable', err);
    }
  }

  async read(contactId: string, epoch: number | undefined): Promise<ReadRow | undefined> {
    const [row] = await this.#query<ContactSql & { wrapped: Buffer | null }>(
      `SELECT c.current_epoch, c.destroyed_at, k.wrapped
       FROM keys_contacts c
       LEFT JOIN keys_content_keys k ON k.contact_id = c.contact_id AND k.epoch = coalesce($2::integer, c.current_epoch)
       WHERE c.contact_id = $1`,
      [contactId, epoch ?? null],
    );
    return row === undefined ? undefined : { ...contactOf(row), wrapped: row.wrapped };
  }

  async contact(contactId: string): Promise<ContactRow | undefined> {
    const [c] = await this.#query<ContactSql>(
      'SELECT current_epoch, destroyed_at FROM keys_contacts WHERE contact_id = $1',
      [contactId],
    );
    return c === undefined ? undefined : contactOf(c);
  }

  create(
    contactId: string,
    wrapped: Uint8Array,
    now: number,
    valid: () => boolean,
  ): Promise<boolean> {
    return this.#tx(async (q) => {
      if (!valid()) return false;
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
    });
  }

  addEpoch(
    contactId: string,
    current: number,
    wrapped: Uint8Array,
    now: number,
    valid: () => boolean,
  ): Promise<boolean> {
    return this.#tx(async (q) => {
      const locked = await q.query<ContactSql>(
        'SELECT current_epoch, destroyed_at FROM keys_contacts WHERE contact_id = $1 FOR UPDATE',
        [contactId],
      );
      const c = locked.rows[0];
      if (c === undefined) throw unknownContact();
      if (c.destroyed_at !== null) throw destroyed();
      if (c.current_epoch !== current || !valid()) return false;
      await q.query(
        'INSERT INTO keys_content_keys (contact_id, epoch, wrapped, created_at) VALUES ($1, $2, $3, $4)',
        [contactId, current + 1, Buffer.from(wrapped), now],
      );
      await q.query('UPDATE keys_contacts SET current_epoch = $1 WHERE contact_id = $2', [
        current + 1,
        contactId,
      ]);
      return true;
    });
  }

  async destroy(contactId: string, now: number, oweNotice: boolean): Promise<void> {
    await this.#tx(async (q) => {
      // The row lock makes "first tombstone" exact between concurrent destroys.
      await q.query('SELECT 1 FROM keys_contacts WHERE contact_id = $1 FOR UPDATE', [contactId]);
      if (oweNotice) {
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
  }

  async allKeys(): Promise<KeyRow[]> {
    return (
      await this.#query<{ contact_id: string; epoch: number; wrapped: Buffer }>(ALL_KEYS)
    ).map(keyRowOf);
  }

  commitRewrap(c: RewrapCommit): Promise<number> {
    return this.#tx(async (q) => {
      // Other processes may read meanwhile but not add, change or delete keys.
      await q.query('LOCK TABLE keys_content_keys IN EXCLUSIVE MODE');
      const rows = (
        await q.query<{ contact_id: string; epoch: number; wrapped: Buffer }>(ALL_KEYS)
      ).rows.map(keyRowOf);
      if (rows.some((r) => !c.done.has(rewrapId(r)))) return -1;
      for (const r of rows) {
        const w = c.done.get(rewrapId(r));
        if (w !== undefined) {
          await q.query(
            'UPDATE keys_content_keys SET wrapped = $1 WHERE contact_id = $2 AND epoch = $3',
            [Buffer.from(w), r.contactId, r.epoch],
          );
        }
      }
      if (c.check !== undefined) {
        await q.query(
          "INSERT INTO keys_meta (name, value) VALUES ('kek_check', $1) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
          [Buffer.from(c.check)],
        );
      } else {
        await q.query("DELETE FROM keys_meta WHERE name = 'kek_check'");
      }
      // The old generation is retired (its KEK still to be destroyed), a new one current.
      if (c.newGeneration) {
        await q.query(
          "UPDATE keys_kek_generations SET state = 'retiring', retired_at = $1, rewrapped = $2 WHERE state = 'current'",
          [c.now, rows.length],
        );
        await q.query(
          "INSERT INTO keys_kek_generations (generation, state, created_at) SELECT max(generation) + 1, 'current', $1 FROM keys_kek_generations",
          [c.now],
        );
      }
      return rows.length;
    });
  }

  async keyCheck(fresh: Uint8Array): Promise<Uint8Array> {
    await this.#query(
      "INSERT INTO keys_meta (name, value) VALUES ('kek_check', $1) ON CONFLICT (name) DO NOTHING",
      [Buffer.from(fresh)],
    );
    const [row] = await this.#query<{ value: Buffer }>(
      "SELECT value FROM keys_meta WHERE name = 'kek_check'",
    );
    if (row === undefined)
      throw new LatchkeyError('KEY_UNAVAILABLE', 'key database lost its key-check value');
    return row.value;
  }

  async generations(): Promise<GenerationRow[]> {
    const rows = await this.#query<{
      generation: number;
      state: 'current' | 'retiring';
      tainted_at: number | null;
    }>(
      "SELECT generation, state, tainted_at FROM keys_kek_generations WHERE state <> 'destroyed' ORDER BY generation",
    );
    return rows.map((r) => ({ generation: r.generation, state: r.state, taintedAt: r.tainted_at }));
  }

  async markDestroyed(generation: number): Promise<void> {
    await this.#query(
      "UPDATE keys_kek_generations SET state = 'destroyed' WHERE generation = $1 AND state = 'retiring'",
      [generation],
    );
  }

  async owedNotices(limit: number): Promise<string[]> {
    const rows = await this.#query<{ contact_id: string }>(
      'SELECT contact_id FROM keys_destroy_notices ORDER BY owed_since, contact_id LIMIT $1',
      [limit],
    );
    return rows.map((r) => r.contact_id);
  }

  async settleNotice(contactId: string): Promise<void> {
    await this.#query('DELETE FROM keys_destroy_notices WHERE contact_id = $1', [contactId]);
  }

  async ping(): Promise<void> {
    await this.#query('SELECT 1');
  }

  async close(): Promise<void> {
    await this.#pool.end().catch(() => undefined);
  }
}
