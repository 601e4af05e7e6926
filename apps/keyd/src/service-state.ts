/**
 * The key service's own state, opened for openKeyService (open-key-service.ts) on one of its two
 * backends: SQLite files under `<dataDir>/keys` for one machine, or the key database on
 * PostgreSQL (`--keys-store`) that every key service of a cluster shares (issue 17,
 * docs/operations.md "A cluster").
 */
import { existsSync } from 'node:fs';
import {
  EpochClock,
  KeyAccessLog,
  SqliteAccessStore,
  loadOrCreateSecret,
  type AccessLogStore,
  type AccessTable,
  type ContactLocks,
  type EpochTimes,
  type Leadership,
} from '@latchkey/keys';
import type { keyServicePaths } from './paths.ts';
import { loadOrCreateServiceSigningKey } from './signing-key.ts';

/** The key service's own state, on either backend (@latchkey/keys service-state.ts). */
export interface ServiceState {
  access: AccessTable;
  accessLog: AccessLogStore;
  clock: EpochTimes;
  signingKey: Uint8Array;
  /** Across key services (PostgreSQL); absent: in this process. */
  locks?: ContactLocks;
  leadership?: Leadership;
  /** The shared webhook outbox's sealing key (PostgreSQL). */
  outboxKey?: Uint8Array;
  /** Master-key rotation of secrets kept outside the data directory. */
  rewrap?: (old: Uint8Array, next: Uint8Array) => Promise<void>;
  /** Closes every part and zeroes the signing key. */
  close(): Promise<void>;
}

type StateOptions = { maxParticipants?: number; contactTtlMs?: number };

/** One machine: SQLite files under `<dataDir>/keys` (paths.ts). */
export async function openSqliteState(
  paths: ReturnType<typeof keyServicePaths>,
  masterKey: Uint8Array,
  opts: StateOptions,
): Promise<ServiceState> {
  let access: SqliteAccessStore | undefined;
  let accessLog: KeyAccessLog | undefined;
  let signingKey: Uint8Array | undefined;
  try {
    // Who may receive keys: membership and deny table, in a file of its own (keys/access.db).
    access = new SqliteAccessStore({
      path: paths.access,
      ...(opts.maxParticipants === undefined ? {} : { maxParticipants: opts.maxParticipants }),
      ...(opts.contactTtlMs === undefined ? {} : { contactTtlMs: opts.contactTtlMs }),
    });
    signingKey = (await loadOrCreateServiceSigningKey(paths.signingKey, masterKey)).secretKey;
    const logKey = loadOrCreateSecret(paths.accessLogKey, 32).secret;
    accessLog = new KeyAccessLog({ path: paths.db, key: logKey });
    logKey.fill(0);
    const clock = new EpochClock({ path: paths.access });
    const [a, l, k] = [access, accessLog, signingKey];
    return {
      access: a,
      accessLog: l,
      clock,
      signingKey: k,
      close: async () => {
        a.close();
        l.close();
        clock.close();
        k.fill(0);
      },
    };
  } catch (err) {
    access?.close();
    accessLog?.close();
    signingKey?.fill(0);
    throw err;
  }
}

/**
 * A cluster: the state in the key database on PostgreSQL, shared by every key service given the
 * same `--keys-store` and master key. A data directory that holds an earlier single-service
 * membership table is imported once, into an empty shared table, so that nobody kicked there is
 * admitted again.
 */
export async function openSharedState(
  url: string,
  paths: ReturnType<typeof keyServicePaths>,
  masterKey: Uint8Array,
  opts: StateOptions,
): Promise<ServiceState> {
  const { openPgServiceState, importSqliteMembership } = await import('@latchkey/keys/postgres');
  const s = await openPgServiceState({
    url,
    masterKey,
    ...(opts.maxParticipants === undefined ? {} : { maxParticipants: opts.maxParticipants }),
    ...(opts.contactTtlMs === undefined ? {} : { contactTtlMs: opts.contactTtlMs }),
  });
  try {
    if (existsSync(paths.access)) await importSqliteMembership(s, paths.access);
  } catch (err) {
    s.signingKey.secretKey.fill(0);
    await s.close();
    throw err;
  }
  return {
    access: s.access,
    accessLog: s.accessLog,
    clock: s.clock,
    signingKey: s.signingKey.secretKey,
    locks: s.locks,
    leadership: s.leadership,
    outboxKey: s.outboxKey,
    rewrap: s.rewrap,
    close: async () => {
      s.signingKey.secretKey.fill(0);
      s.outboxKey.fill(0);
      await s.close();
    },
  };
}
