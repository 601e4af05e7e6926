/**
 * Master-key rotation of the internal key manager (docs/key-management.md "Master-key rotation";
 * `latchkey keys rewrap`): every content key and the service signing key are re-wrapped under a
 * new master key; messages are not touched (the content keys do not change).
 *
 * - online: `POST /admin/v1/keys/rewrap {"newMasterKey"}` on the running key service
 *   (`registerRewrapRoute`), which re-wraps through `WrappedKeyManager.rewrap` while reads go on;
 * - offline: `rotateMasterKeyOffline` on a stopped key service's data directory.
 * Both finish a rotation that stopped half-way (the key store under the new key already).
 */
import type { FastifyInstance } from 'fastify';
import { fromBase64Url } from '@latchkey/crypto/codec';
import {
  createInternalWrapper,
  openInternalKeyManager,
  rewrapInternalKeyStore,
  type KeyManager,
  type WrappedKeyManager,
} from '@latchkey/keys';
import { ADMIN_PATHS, LatchkeyError, RewrapRequest, parseRequest, type RewrapResponse } from '@latchkey/protocol';
import { createAdminAuthenticator, type AdminKey } from '@latchkey/tokens';
import { rewrapServiceSigningKey } from './signing-key.ts';

function isInternal(km: KeyManager): km is WrappedKeyManager {
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
    result = await rewrapInternalKeyStore({ path: opts.paths.db, masterKey: opts.masterKey, newMasterKey: opts.newMasterKey });
  } catch (err) {
    if (!LatchkeyError.is(err, 'KEY_UNAVAILABLE')) throw err;
    // Already under the new key (an earlier run stopped before the end)? Then finish.
    const km = await openInternalKeyManager({ path: opts.paths.db, masterKey: opts.newMasterKey }).catch(() => {
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
    keys: readonly AdminKey[];
    ipAllowlist?: readonly string[];
  },
): void {
  const auth = createAdminAuthenticator(opts.keys, opts.ipAllowlist === undefined ? {} : { ipAllowlist: opts.ipAllowlist });
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
      if (!opts.internal || !isInternal(km)) throw new LatchkeyError('NOT_FOUND', 'master-key rotation needs the internal key manager');
      if (running) throw new LatchkeyError('CONFLICT', 'a rewrap is already running');
      running = true;
      const next = fromBase64Url(body.newMasterKey);
      try {
        const result = await km.rewrap(createInternalWrapper(next));
        await rewrapServiceSigningKey(opts.signingKeyPath, opts.master.key, next);
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
