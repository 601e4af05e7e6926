/**
 * `latchkey keys rewrap` (docs/key-management.md): master-key rotation of the internal key
 * manager, online through the running key service or offline on its files; with an external
 * key manager, a re-wrap of every key in place under the newest version of its KEK. The new
 * master key comes from the environment or a file, never from a flag. Offline, the wrapped keys
 * are those of `<data>/keys/keys.db`, or of the PostgreSQL database `--keys-store` (or
 * LATCHKEY_KEYS_STORE) names when the key services keep them there (docs/operations.md).
 */
import { existsSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { toBase64Url } from '@latchkey/crypto/codec';
import { randomBytes } from '@latchkey/crypto/random';
import {
  keyServicePaths,
  openChosenKeyManager,
  rewrapServiceSigningKey,
  rotateMasterKeyOffline,
} from '@latchkey/keyd';
import {
  createInternalWrapper,
  createPrivateFile,
  decodeSecretText,
  readPrivateFile,
  resolveMasterKey,
  type KeyManager,
  type WrappedKeyManager,
} from '@latchkey/keys';
import { ADMIN_PATHS, LatchkeyError, RewrapResponse } from '@latchkey/protocol';
import { call, target, type AdminFlags } from './admin.ts';
import { dataDir, endpoints } from './config.ts';
import { EXIT, UsageError } from './usage.ts';

type Out = (line: string) => void;
type Env = Readonly<Record<string, string | undefined>>;

export interface RewrapFlags {
  data?: string | undefined;
  keys?: string | undefined;
  relay?: string | undefined;
  offline?: boolean | undefined;
  /** postgres://... where the wrapped keys are (else LATCHKEY_KEYS_STORE, else keys/keys.db). */
  'keys-store'?: string | undefined;
}

/** The key store URL of `--keys-store` or LATCHKEY_KEYS_STORE; never echoed (it may hold a password). */
export function keyStoreUrl(
  flags: { 'keys-store'?: string | undefined },
  env: Env,
): string | undefined {
  const [text, from] =
    flags['keys-store'] !== undefined
      ? [flags['keys-store'], '--keys-store']
      : [env.LATCHKEY_KEYS_STORE, 'LATCHKEY_KEYS_STORE'];
  if (text === undefined || text.trim() === '') return undefined;
  let ok: boolean;
  try {
    const u = new URL(text);
    ok = (u.protocol === 'postgres:' || u.protocol === 'postgresql:') && u.hostname !== '';
  } catch {
    ok = false;
  }
  if (!ok) throw new UsageError(`${from} must be a postgres://... URL`);
  return text;
}

/**
 * Whether `path` is a key store of the internal key manager (its `meta` table). A key service
 * whose keys are on PostgreSQL keeps only the access log in keys.db: re-wrapping that file and
 * replacing master.key would leave every key on PostgreSQL under a master key no longer kept.
 */
function holdsKeyStore(path: string): boolean {
  if (!existsSync(path)) return false;
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return (
      db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").get() !==
      undefined
    );
  } finally {
    db.close();
  }
}

/**
 * Offline rotation of the wrapped keys on PostgreSQL (`url`) and of the signing key file, from
 * `masterKey` to `newMasterKey`, as the online rewrap does it. Run it while no key service uses
 * the database. A run that stopped half-way (keys under the new key already) is finished.
 * @throws LatchkeyError KEY_UNAVAILABLE when the database matches neither key.
 */
async function rotateOnPostgres(opts: {
  url: string;
  paths: { db: string; signingKey: string };
  masterKey: Uint8Array;
  newMasterKey: Uint8Array;
}): Promise<{ rewrapped: number }> {
  const open = (key: Uint8Array): Promise<KeyManager> =>
    openChosenKeyManager({ kind: 'internal' }, opts.paths.db, key, opts.url);
  let result = { rewrapped: 0 };
  let km: KeyManager | undefined;
  try {
    km = await open(opts.masterKey);
  } catch (err) {
    if (!LatchkeyError.is(err, 'KEY_UNAVAILABLE')) throw err;
    // Already under the new key (an earlier run stopped before the end)? Then finish.
    const done = await open(opts.newMasterKey).catch(() => {
      throw err;
    });
    await done.close();
  }
  if (km !== undefined) {
    const next = createInternalWrapper(opts.newMasterKey);
    try {
      result = await (km as WrappedKeyManager).rewrap(next);
    } catch (err) {
      await next.close();
      throw err;
    } finally {
      await km.close();
    }
  }
  await rewrapServiceSigningKey(opts.paths.signingKey, opts.masterKey, opts.newMasterKey);
  await rewrapSharedState(opts.url, opts.masterKey, opts.newMasterKey);
  return result;
}

/**
 * The key service's own secrets on PostgreSQL (the cluster's signing key and access-log key,
 * wrapped under the master key; `@latchkey/keys/postgres` `openPgServiceState`) re-wrapped under
 * `next`, as the online rewrap does. Opened with the old key, else (a run that stopped half-way)
 * with the new one; a secret already under `next` is left alone.
 * @throws LatchkeyError KEY_UNAVAILABLE when they open under neither key.
 */
async function rewrapSharedState(url: string, old: Uint8Array, next: Uint8Array): Promise<void> {
  const { openPgServiceState } = await import('@latchkey/keys/postgres');
  type State = Awaited<ReturnType<typeof openPgServiceState>> & {
    rewrap?: (old: Uint8Array, next: Uint8Array) => Promise<void>;
  };
  let state: State;
  try {
    state = await openPgServiceState({ url, masterKey: old, maxConnections: 1 });
  } catch (err) {
    if (!LatchkeyError.is(err, 'KEY_UNAVAILABLE')) throw err;
    state = await openPgServiceState({ url, masterKey: next, maxConnections: 1 }).catch(() => {
      throw err;
    });
  }
  try {
    await state.rewrap?.(old, next);
  } finally {
    state.signingKey.secretKey.fill(0);
    await state.close();
  }
}

/**
 * `latchkey keys rewrap`: re-wraps every content key of the internal key manager (and the
 * signing key) under a new master key. The new key is LATCHKEY_NEW_MASTER_KEY, or generated into
 * `DIR/master.key.new` and moved over `DIR/master.key` once done (the old file stays until
 * then). Online through the running key service when it answers, else (or with --offline) on
 * the files. Messages are not touched. With an external key manager (`/healthz` backend
 * `http`), the running key service re-wraps every key in place under the newest version of the
 * enterprise's KEK (the key manager's `rewrap`), after the enterprise rotated it.
 */
export async function keysRewrap(
  flags: RewrapFlags,
  out: Out,
  env: Env = process.env,
): Promise<number> {
  const dir = dataDir(flags.data);
  const storeUrl = keyStoreUrl(flags, env);
  let online: { keys: string; authorization: string; backend: string } | undefined;
  if (flags.offline !== true) {
    try {
      await endpoints({ relay: flags.relay, keys: flags.keys }, dir);
      const t = await target(flags as AdminFlags);
      const health = await fetch(`${t.keys}/healthz`, { signal: AbortSignal.timeout(3000) }).then(
        async (r) => ((await r.json()) as { backend?: unknown }).backend,
        () => null,
      );
      if (health !== null)
        online = {
          keys: t.keys,
          authorization: t.authorization,
          backend: typeof health === 'string' ? health : 'internal',
        };
    } catch {
      // no running key service known: offline
    }
  }
  if (online?.backend === 'http') {
    const res = RewrapResponse.parse(
      await call(online.keys, ADMIN_PATHS.rewrap, online.authorization, {}),
    );
    out(`rewrapped ${res.rewrapped} content keys (online, in place at the key manager)`);
    return EXIT.ok;
  }
  const paths = keyServicePaths(dir);
  const masterFile = join(dir, 'master.key');
  const nextFile = `${masterFile}.new`;
  const current = resolveMasterKey({ env, file: masterFile });
  if (current.created) throw new LatchkeyError('NOT_FOUND', `no master key in ${dir}`);
  if (online === undefined && storeUrl === undefined && !holdsKeyStore(paths.db))
    throw new UsageError(
      `no wrapped keys in ${paths.db}: when the key service keeps them on PostgreSQL, give --keys-store postgres://... (or LATCHKEY_KEYS_STORE)`,
    );
  const fromEnv = env.LATCHKEY_NEW_MASTER_KEY;
  let next: Uint8Array;
  if (fromEnv !== undefined && fromEnv.trim() !== '') {
    next = decodeSecretText(fromEnv, 'LATCHKEY_NEW_MASTER_KEY', { exactBytes: 32 });
  } else if (current.source === 'env') {
    throw new UsageError(
      'the master key comes from LATCHKEY_MASTER_KEY: give the new one in LATCHKEY_NEW_MASTER_KEY',
    );
  } else {
    // A run that stopped half-way left its new key here: use it again.
    if (!existsSync(nextFile)) createPrivateFile(nextFile, randomBytes(32));
    next = readPrivateFile(nextFile, 32);
  }
  let mode = 'offline';
  let rewrapped: number;
  if (online) {
    const res = RewrapResponse.parse(
      await call(online.keys, ADMIN_PATHS.rewrap, online.authorization, {
        newMasterKey: toBase64Url(next),
      }),
    );
    rewrapped = res.rewrapped;
    mode = 'online';
  } else {
    const rotation = { paths, masterKey: current.key, newMasterKey: next };
    rewrapped = (
      storeUrl === undefined
        ? await rotateMasterKeyOffline(rotation)
        : await rotateOnPostgres({ ...rotation, url: storeUrl })
    ).rewrapped;
  }
  current.key.fill(0);
  next.fill(0);
  if (current.source !== 'env' && (fromEnv === undefined || fromEnv.trim() === '')) {
    // The key service may have put it in place already (a shred completion meanwhile).
    if (existsSync(nextFile)) renameSync(nextFile, masterFile);
    out(`master-key: ${masterFile} (replaced)`);
  } else {
    out('master-key: set LATCHKEY_MASTER_KEY to the value of LATCHKEY_NEW_MASTER_KEY from now on');
  }
  out(`rewrapped ${rewrapped} content keys (${mode})`);
  return EXIT.ok;
}
