/**
 * Master-key rotation of the internal key manager (docs/key-management.md "Master-key rotation";
 * `latchkey keys rewrap`): every content key and the service signing key are re-wrapped under a
 * new master key; messages are not touched (the content keys do not change).
 *
 * - online: `POST /admin/v1/keys/rewrap {"newMasterKey"}` on the running key service
 *   (`registerRewrapRoute`), which re-wraps through `WrappedKeyManager.rewrap` while reads go on;
 * - offline: `rotateMasterKeyOffline` on a stopped key service's data directory.
 * Both finish a rotation that stopped half-way (the key store under the new key already).
 *
 * The master key is also the internal key manager's KEK generation (docs/key-management.md
 * "Completing a shred"): `internalGenerations` makes a new one (`master.key.new`, or a key the
 * operator supplies) for a completion, and "destroys" a retired one by putting the current key
 * in place of the old in `master.key` (and re-wrapping the signing key); `openInternalRecovering`
 * finishes, at start, a rotation that stopped after the key store was re-wrapped.
 */
import { existsSync, renameSync, rmSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { fromBase64Url } from '@latchkey/crypto/codec';
import { randomBytes } from '@latchkey/crypto/random';
import {
  createInternalWrapper,
  createPrivateFile,
  openInternalKeyManager,
  readPrivateFile,
  rewrapInternalKeyStore,
  type KekGenerations,
  type KeyManager,
  type WrappedKeyManager,
} from '@latchkey/keys';
import {
  ADMIN_PATHS,
  LatchkeyError,
  RewrapRequest,
  parseRequest,
  type RewrapResponse,
} from '@latchkey/protocol';
import { createAdminAuthenticator, type AdminKey } from '@latchkey/tokens';
import { rewrapServiceSigningKey } from './signing-key.ts';

function isWrapped(km: KeyManager): km is WrappedKeyManager {
  return typeof (km as Partial<WrappedKeyManager>).rewrap === 'function';
}

/**
 * Offline rotation of `<dataDir>/keys`: keys.db and the signing key, from `masterKey` to
 * `newMasterKey`. Run it while no key service uses the directory.
 * @throws LatchkeyError KEY_UNAVAILABLE when the store matches neither key.
 */
export async function rotateMasterKeyOffline(opts: {
  paths: { db: string; signingKey: string };
  masterKey: Uint8Array;
  newMasterKey: Uint8Array;
}): Promise<{ rewrapped: number }> {
  let result: { rewrapped: number };
  try {
    result = await rewrapInternalKeyStore({
      path: opts.paths.db,
      masterKey: opts.masterKey,
      newMasterKey: opts.newMasterKey,
    });
  } catch (err) {
    if (!LatchkeyError.is(err, 'KEY_UNAVAILABLE')) throw err;
    // Already under the new key (an earlier run stopped before the end)? Then finish.
    const km = await openInternalKeyManager({
      path: opts.paths.db,
      masterKey: opts.newMasterKey,
    }).catch(() => {
      throw err;
    });
    await km.close();
    result = { rewrapped: 0 };
  }
  await rewrapServiceSigningKey(opts.paths.signingKey, opts.masterKey, opts.newMasterKey);
  return result;
}

/**
 * The online rotation route on the key service's admin API. `master` holds the current master
 * key (replaced in place after a rotation). Answers NOT_FOUND when the key manager is not the
 * internal one (an HSM or the enterprise rotates its own KEK).
 */
export function registerRewrapRoute(
  app: FastifyInstance,
  opts: {
    keyManager: KeyManager;
    /** Is the key manager the internal adapter (master-key wrapped)? */
    internal: boolean;
    master: { key: Uint8Array };
    signingKeyPath: string;
    /** Re-wraps the secrets kept elsewhere (the PostgreSQL state's) under the new master key. */
    rewrapShared?: (old: Uint8Array, next: Uint8Array) => Promise<void>;
    keys: readonly AdminKey[];
    ipAllowlist?: readonly string[];
  },
): void {
  const auth = createAdminAuthenticator(
    opts.keys,
    opts.ipAllowlist === undefined ? {} : { ipAllowlist: opts.ipAllowlist },
  );
  let running = false;
  app.post(
    ADMIN_PATHS.rewrap,
    {
      onRequest: async (req) => {
        auth.check(req.headers.authorization, req.socket.remoteAddress);
      },
    },
    async (req): Promise<RewrapResponse> => {
      const body = parseRequest(RewrapRequest, req.body ?? {});
      const km = opts.keyManager;
      if (body.newMasterKey === undefined) {
        // In place at the external key manager, after the enterprise rotated its KEK.
        if (opts.internal || !isWrapped(km) || km.currentWrapper.rewrap === undefined)
          throw new LatchkeyError(
            'BAD_REQUEST',
            'a rewrap without newMasterKey needs an external key manager that re-wraps (--key-manager http, wrap model)',
          );
        if (running) throw new LatchkeyError('CONFLICT', 'a rewrap is already running');
        running = true;
        try {
          return await km.rewrap(km.currentWrapper);
        } finally {
          running = false;
        }
      }
      if (!opts.internal || !isWrapped(km))
        throw new LatchkeyError('NOT_FOUND', 'master-key rotation needs the internal key manager');
      if (running) throw new LatchkeyError('CONFLICT', 'a rewrap is already running');
      running = true;
      const next = fromBase64Url(body.newMasterKey);
      try {
        const result = await km.rewrap(createInternalWrapper(next));
        await rewrapServiceSigningKey(opts.signingKeyPath, opts.master.key, next);
        await opts.rewrapShared?.(opts.master.key, next);
        opts.master.key.fill(0);
        opts.master.key = next;
        return result;
      } catch (err) {
        next.fill(0);
        throw err;
      } finally {
        running = false;
      }
    },
  );
}

const equal = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length && a.every((v, i) => v === b[i]);

/** The file that holds the master key, when it is exactly `key` (else the key came from elsewhere). */
export function masterKeyFileOf(file: string, key: Uint8Array): string | undefined {
  if (!existsSync(file)) return undefined;
  try {
    const held = readPrivateFile(file, 32);
    const same = equal(held, key);
    held.fill(0);
    return same ? file : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Puts `key` in `file` in place of what is there, atomically (0600): from `file.new` when that
 * holds it (a rotation prepared it), else through a temporary file. The old bytes are gone
 * from the file system's view once the rename is done.
 */
function installMasterKey(file: string, key: Uint8Array): void {
  const next = `${file}.new`;
  if (existsSync(file)) {
    const held = readPrivateFile(file, 32);
    const same = equal(held, key);
    held.fill(0);
    if (same) {
      rmSync(next, { force: true });
      return;
    }
  }
  if (existsSync(next)) {
    const staged = readPrivateFile(next, 32);
    const same = equal(staged, key);
    staged.fill(0);
    if (same) {
      renameSync(next, file);
      return;
    }
    rmSync(next, { force: true });
  }
  const tmp = `${file}.tmp`;
  rmSync(tmp, { force: true });
  if (!createPrivateFile(tmp, key))
    throw new LatchkeyError('KEY_UNAVAILABLE', 'cannot write the master key');
  renameSync(tmp, file);
}

/**
 * The internal key manager's KEK generations: the master key. A new generation's key is
 * `supplied` (an operator's key, needed when the master key comes from the environment) or a
 * random key kept in `masterFile.new` until it replaces `masterFile` (an interrupted run finds
 * and reuses it). Destroying the retired generation re-wraps the signing key under the current
 * master key and puts that key in `masterFile`; the in-memory `master` follows.
 */
export function internalGenerations(opts: {
  master: { key: Uint8Array };
  /** The master key's file, when it comes from one. */
  masterFile: string | undefined;
  signingKeyPath: string;
  /** Re-wraps the secrets kept elsewhere (the PostgreSQL state's) under the new master key. */
  rewrapShared?: (old: Uint8Array, next: Uint8Array) => Promise<void>;
  supplied?: Uint8Array;
}): KekGenerations {
  let pending: Uint8Array | undefined;
  return {
    async wrapper(_generation, { create }) {
      if (!create) return createInternalWrapper(opts.master.key);
      let next: Uint8Array;
      if (opts.supplied !== undefined) {
        next = Uint8Array.from(opts.supplied);
      } else if (opts.masterFile !== undefined) {
        const file = `${opts.masterFile}.new`;
        if (!existsSync(file)) createPrivateFile(file, randomBytes(32));
        next = readPrivateFile(file, 32);
      } else {
        throw new LatchkeyError(
          'CONFLICT',
          'the master key comes from LATCHKEY_MASTER_KEY: give a new one in LATCHKEY_NEW_MASTER_KEY to latchkey shred --complete',
        );
      }
      pending?.fill(0);
      pending = next;
      return createInternalWrapper(next);
    },
    async destroy() {
      if (pending !== undefined) {
        // The store is under `pending` now (a retiring generation exists only after the rewrap).
        await rewrapServiceSigningKey(opts.signingKeyPath, opts.master.key, pending);
        await opts.rewrapShared?.(opts.master.key, pending);
        opts.master.key.fill(0);
        opts.master.key = pending;
        pending = undefined;
      }
      if (opts.masterFile !== undefined) installMasterKey(opts.masterFile, opts.master.key);
    },
  };
}

/**
 * Opens the internal key store with `master.key`; when that no longer matches because a
 * rotation re-wrapped the store and stopped before replacing the master key file, finishes it
 * with `masterFile.new` (signing key re-wrapped, file replaced, `master.key` updated).
 * @throws LatchkeyError KEY_UNAVAILABLE when neither key opens the store.
 */
export async function openInternalRecovering(
  open: (masterKey: Uint8Array) => Promise<KeyManager>,
  opts: { master: { key: Uint8Array }; masterFile: string | undefined; signingKeyPath: string },
): Promise<KeyManager> {
  try {
    return await open(opts.master.key);
  } catch (err) {
    const staged = opts.masterFile === undefined ? undefined : `${opts.masterFile}.new`;
    if (!LatchkeyError.is(err, 'KEY_UNAVAILABLE') || staged === undefined || !existsSync(staged))
      throw err;
    const next = readPrivateFile(staged, 32);
    let km: KeyManager;
    try {
      km = await open(next);
    } catch {
      next.fill(0);
      throw err;
    }
    await rewrapServiceSigningKey(opts.signingKeyPath, opts.master.key, next);
    installMasterKey(opts.masterFile ?? '', next);
    opts.master.key.fill(0);
    opts.master.key = next;
    return km;
  }
}
