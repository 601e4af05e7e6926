/**
 * Opens the key service's shared state on PostgreSQL (issue 17; service-state.ts): membership,
 * owed rotations, the access log and its cursors, epoch dates, and the two secrets every key
 * service of a cluster must share, each wrapped under a key derived from the master key: the
 * service signing key (the one certificate authority clients pin) and the access log's chain
 * key. The first key service to start creates them; the others read the same rows.
 *
 * Cross-process coordination: a contact's rotation work runs under an advisory lock per contact
 * (`ContactLocks`), and a named role (forwarding the access log to one destination) is held by
 * one process at a time through a session advisory lock, released by PostgreSQL when the
 * holder's connection ends, so a killed process's role is taken over.
 */
import { generateSigningKeyPair, signingPublicKey } from '@latchkey/crypto/sign';
import { deriveKek, unwrapContentKey, wrapContentKey } from '@latchkey/crypto/wrap';
import { LatchkeyError } from '@latchkey/protocol';
import { migratePostgres, openPool, type PgClient, type PgPool } from '@latchkey/storage/postgres';
import { randomBytes } from 'node:crypto';
import { LocalContactLocks, type ContactLocks, type Leadership } from '../service-state.ts';
import { PgAccessStore, PgEpochClock, pgUnavailable } from './pg-access.ts';
import { PgKeyAccessLog } from './pg-access-log.ts';
import { PG_SERVICE_SCHEMA_VERSION, SERVICE_MIGRATIONS } from './pg-service-schema.ts';

export { PG_SERVICE_SCHEMA_VERSION };

/** Advisory lock of these migrations ("lkkeyd"), distinct from the key store's and the relay's. */
const MIGRATION_LOCK = 0x6c6b6b657964;

export interface PgServiceStateOptions {
  /** The key database (`--keys-store`): never the relay's messages database. */
  url: string;
  /** 32-byte master key: wraps the signing key and the access-log key. */
  masterKey: Uint8Array;
  maxParticipants?: number;
  contactTtlMs?: number;
  /** Connections for queries (default 10); locks use a pool of their own. */
  maxConnections?: number;
}

export interface PgServiceState {
  /** The query pool (the import of an earlier SQLite membership uses it). */
  pool: PgPool;
  access: PgAccessStore;
  accessLog: PgKeyAccessLog;
  clock: PgEpochClock;
  locks: ContactLocks;
  leadership: Leadership;
  /** The cluster's service signing key (Ed25519 seed) and its public key. */
  signingKey: { secretKey: Uint8Array; publicKey: Uint8Array; created: boolean };
  /** The key that seals the webhook outbox's endpoint secrets, the same in every key service. */
  outboxKey: Uint8Array;
  /**
   * Master-key rotation of the shared secrets: each is re-wrapped under `next` (one already
   * under `next` is left alone, so a rotation that stopped half-way finishes).
   * @throws LatchkeyError KEY_UNAVAILABLE when a secret unwraps under neither key.
   */
  rewrap(old: Uint8Array, next: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

/** How each shared secret is wrapped: the signing key exactly as its file (signing-key.ts). */
const SECRETS = {
  signing: { purpose: 'service-signing', ctx: { contactId: 'latchkey.service-signing', epoch: 0 } },
  accessLog: { purpose: 'access-log', ctx: { contactId: 'latchkey.access-log', epoch: 0 } },
  outbox: { purpose: 'webhook-outbox', ctx: { contactId: 'latchkey.webhook-outbox', epoch: 0 } },
} as const;

/**
 * The secret `name`, created with `make` by the first caller (INSERT ... ON CONFLICT DO NOTHING:
 * every later one reads the winner's).
 * @throws LatchkeyError KEY_UNAVAILABLE when the stored one does not unwrap under this master key.
 */
async function sharedSecret(
  pool: PgPool,
  name: keyof typeof SECRETS,
  masterKey: Uint8Array,
  make: () => Uint8Array,
): Promise<{ secret: Uint8Array; created: boolean }> {
  const { purpose, ctx } = SECRETS[name];
  const kek = deriveKek(masterKey, purpose);
  try {
    const fresh = make();
    const wrapped = await wrapContentKey(kek, fresh, ctx);
    const ins = await pool.query(
      'INSERT INTO keyd_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING',
      [purpose, Buffer.from(wrapped)],
    );
    if (ins.rowCount === 1) return { secret: fresh, created: true };
    fresh.fill(0);
    const r = await pool.query<{ value: Uint8Array }>(
      'SELECT value FROM keyd_secrets WHERE name = $1',
      [purpose],
    );
    const stored = r.rows[0]?.value;
    if (stored === undefined) throw new Error(`secret ${purpose} vanished`);
    try {
      return { secret: await unwrapContentKey(kek, new Uint8Array(stored), ctx), created: false };
    } catch (err) {
      throw new LatchkeyError(
        'KEY_UNAVAILABLE',
        `the key database's ${purpose} key does not match the master key`,
        { cause: err, detail: 'every key service of a cluster needs the same master key' },
      );
    }
  } finally {
    kek.fill(0);
  }
}

async function rewrapSecrets(pool: PgPool, old: Uint8Array, next: Uint8Array): Promise<void> {
  for (const { purpose, ctx } of Object.values(SECRETS)) {
    const r = await pool.query<{ value: Uint8Array }>(
      'SELECT value FROM keyd_secrets WHERE name = $1',
      [purpose],
    );
    const stored = r.rows[0]?.value;
    if (stored === undefined) continue;
    const oldKek = deriveKek(old, purpose);
    const newKek = deriveKek(next, purpose);
    try {
      try {
        (await unwrapContentKey(newKek, new Uint8Array(stored), ctx)).fill(0);
        continue;
      } catch {
        // Not re-wrapped yet.
      }
      let secret: Uint8Array;
      try {
        secret = await unwrapContentKey(oldKek, new Uint8Array(stored), ctx);
      } catch (err) {
        throw new LatchkeyError(
          'KEY_UNAVAILABLE',
          `the key database's ${purpose} key does not match the master key`,
          { cause: err },
        );
      }
      const wrapped = await wrapContentKey(newKek, secret, ctx);
      secret.fill(0);
      await pool.query('UPDATE keyd_secrets SET value = $2 WHERE name = $1', [
        purpose,
        Buffer.from(wrapped),
      ]);
    } finally {
      oldKek.fill(0);
      newKek.fill(0);
    }
  }
}

/** A contact's lock key: a 64-bit hash of its id (a collision only serialises two contacts). */
const LOCK_OF = "SELECT pg_advisory_lock(hashtextextended('latchkey.contact:' || $1, 0))";
const UNLOCK_OF = "SELECT pg_advisory_unlock(hashtextextended('latchkey.contact:' || $1, 0))";

class PgContactLocks implements ContactLocks {
  readonly #local = new LocalContactLocks();
  readonly #pool: PgPool;

  constructor(pool: PgPool) {
    this.#pool = pool;
  }

  /** In this process first (one waiter per contact holds a connection), then across processes. */
  run<T>(contactId: string, fn: () => Promise<T>): Promise<T> {
    return this.#local.run(contactId, async () => {
      let client: PgClient;
      try {
        client = await this.#pool.connect();
      } catch (err) {
        throw pgUnavailable(err, 'contact lock');
      }
      let broken = false;
      const onError = (): void => {
        broken = true;
      };
      client.on('error', onError);
      try {
        try {
          await client.query(LOCK_OF, [contactId]);
        } catch (err) {
          broken = true;
          throw pgUnavailable(err, 'contact lock');
        }
        try {
          return await fn();
        } finally {
          await client.query(UNLOCK_OF, [contactId]).catch(() => {
            broken = true;
          });
        }
      } finally {
        client.off('error', onError);
        // A connection that failed is ended, which releases whatever lock it held.
        client.release(broken);
      }
    });
  }
}

/** Roles held through session advisory locks, on connections kept for as long as they are held. */
class PgLeadership implements Leadership {
  readonly #pool: PgPool;
  readonly #held = new Map<string, PgClient>();
  #closed = false;

  constructor(pool: PgPool) {
    this.#pool = pool;
  }

  async held(name: string): Promise<boolean> {
    if (this.#closed) return false;
    const mine = this.#held.get(name);
    if (mine !== undefined) {
      try {
        await mine.query('SELECT 1');
        return true;
      } catch {
        this.#held.delete(name);
        mine.release(true);
        return false;
      }
    }
    let client: PgClient;
    try {
      client = await this.#pool.connect();
    } catch {
      return false;
    }
    client.on('error', () => undefined);
    try {
      const r = await client.query<{ ok: boolean }>(
        "SELECT pg_try_advisory_lock(hashtextextended('latchkey.role:' || $1, 0)) AS ok",
        [name],
      );
      if (r.rows[0]?.ok === true && !this.#closed) {
        this.#held.set(name, client);
        return true;
      }
    } catch {
      client.release(true);
      return false;
    }
    client.release();
    return false;
  }

  async close(): Promise<void> {
    this.#closed = true;
    // Released at once for another process; a connection that cannot is ended (which releases).
    const held = [...this.#held.values()];
    this.#held.clear();
    await Promise.all(
      held.map(async (c) => {
        try {
          await c.query('SELECT pg_advisory_unlock_all()');
          c.release();
        } catch {
          c.release(true);
        }
      }),
    );
  }
}

/**
 * Opens (migrating) the key service's state in the PostgreSQL database at `opts.url`.
 * @throws LatchkeyError KEY_UNAVAILABLE when the database is unreachable, holds the relay's
 *   messages, has a newer schema, or its secrets were wrapped under another master key.
 */
export async function openPgServiceState(opts: PgServiceStateOptions): Promise<PgServiceState> {
  const pool = openPool({ url: opts.url, max: opts.maxConnections ?? 10 });
  // Lock holders wait on their own connections, never on the query pool they may need.
  const lockPool = openPool({ url: opts.url, max: 32 });
  const end = async (): Promise<void> => {
    await Promise.allSettled([pool.end(), lockPool.end()]);
  };
  let signing: { secret: Uint8Array; created: boolean } | undefined;
  let logKey: { secret: Uint8Array } | undefined;
  let outboxKey: { secret: Uint8Array } | undefined;
  try {
    await migratePostgres(pool, {
      lock: MIGRATION_LOCK,
      versionTable: 'keyd_schema_version',
      steps: SERVICE_MIGRATIONS,
      what: 'the key service database',
      code: 'KEY_UNAVAILABLE',
      check: async (q) => {
        const r = await q.query<{ t: string | null }>("SELECT to_regclass('messages')::text AS t");
        if ((r.rows[0]?.t ?? null) !== null)
          throw new LatchkeyError(
            'KEY_UNAVAILABLE',
            'the key service state must not share the messages database',
            {
              detail: 'found the relay table "messages"; give the key store a database of its own',
            },
          );
      },
    });
    signing = await sharedSecret(
      pool,
      'signing',
      opts.masterKey,
      () => generateSigningKeyPair().secretKey,
    );
    logKey = await sharedSecret(
      pool,
      'accessLog',
      opts.masterKey,
      () => new Uint8Array(randomBytes(32)),
    );
    outboxKey = await sharedSecret(pool, 'outbox', opts.masterKey, () =>
      Uint8Array.from(randomBytes(32)),
    );
    const access = new PgAccessStore(pool, {
      ...(opts.maxParticipants === undefined ? {} : { maxParticipants: opts.maxParticipants }),
      ...(opts.contactTtlMs === undefined ? {} : { contactTtlMs: opts.contactTtlMs }),
    });
    const accessLog = new PgKeyAccessLog(pool, { key: logKey.secret });
    logKey.secret.fill(0);
    const leadership = new PgLeadership(lockPool);
    const secretKey = signing.secret;
    return {
      pool,
      access,
      accessLog,
      clock: new PgEpochClock(pool),
      locks: new PgContactLocks(lockPool),
      leadership,
      signingKey: { secretKey, publicKey: signingPublicKey(secretKey), created: signing.created },
      outboxKey: outboxKey.secret,
      rewrap: (old, next) => rewrapSecrets(pool, old, next),
      close: async () => {
        accessLog.close();
        await leadership.close();
        await end();
      },
    };
  } catch (err) {
    signing?.secret.fill(0);
    logKey?.secret.fill(0);
    outboxKey?.secret.fill(0);
    await end();
    throw pgUnavailable(err, 'key service database');
  }
}
