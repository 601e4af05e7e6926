/**
 * The internal key manager: the wrapped key store (stores/key-store.ts) with a KEK derived from the
 * master key (DESIGN.md "Key hierarchy"; wrapping per @latchkey/crypto/wrap, AES-256-GCM bound
 * to contact id and epoch). A key-check value makes a wrong master key fail at open. Master-key
 * rotation re-wraps every content key under a KEK derived from the new master key.
 */
import { deriveKek, unwrapContentKey, wrapContentKey } from '@latchkey/crypto/wrap';
import { LatchkeyError } from '@latchkey/protocol';
import type { KeyWrapper } from '../key-wrapper.ts';
import { openKeyManager } from '../open-key-manager.ts';
import type { WrappedKeyManager } from '../stores/key-store.ts';

export { INTERNAL_SCHEMA_VERSION } from '../stores/sqlite.ts';

export interface InternalKeyManagerOptions {
  /** The SQLite file, e.g. `<dataDir>/keys/keys.db`. Missing directories are created 0700. */
  path: string;
  /** 32-byte master key (see resolveMasterKey). The KEK is derived from it with deriveKek. */
  masterKey: Uint8Array;
  /** Clock in Unix milliseconds, for tests. */
  now?: () => number;
}

const MISMATCH = 'the master key does not match this key database';

function checkMasterKey(masterKey: Uint8Array): void {
  if (!(masterKey instanceof Uint8Array) || masterKey.length !== 32) {
    throw new RangeError('master key must be 32 bytes');
  }
}

/**
 * A KeyWrapper whose KEK is `deriveKek(masterKey)` (the caller may zero `masterKey` afterwards).
 * @throws RangeError when the master key is not 32 bytes.
 */
export function createInternalWrapper(masterKey: Uint8Array): KeyWrapper {
  checkMasterKey(masterKey);
  const kek = deriveKek(masterKey);
  let closed = false;
  const live = (): Uint8Array => {
    if (closed) throw new LatchkeyError('KEY_UNAVAILABLE', 'key-encryption key was closed');
    return kek;
  };
  return {
    backend: 'internal',
    checkAtOpen: true,
    wrap: async (key, req) =>
      wrapContentKey(live(), key, { contactId: req.contactId, epoch: req.epoch }),
    unwrap: async (wrapped, req) =>
      unwrapContentKey(live(), wrapped, { contactId: req.contactId, epoch: req.epoch }),
    health: async () =>
      closed
        ? { status: 'degraded', backend: 'internal', detail: 'closed' }
        : { status: 'ok', backend: 'internal' },
    close: async () => {
      closed = true;
      kek.fill(0);
    },
  };
}

/**
 * Opens (creating when missing) the internal key store at `opts.path` and checks that the
 * master key is the one the store was created with.
 * @throws LatchkeyError KEY_UNAVAILABLE when the master key does not match the store, the
 *   schema is newer than this build, or the file cannot be opened.
 * @throws RangeError when the master key is not 32 bytes.
 */
export async function openInternalKeyManager(
  opts: InternalKeyManagerOptions,
): Promise<WrappedKeyManager> {
  checkMasterKey(opts.masterKey);
  return openKeyManager({
    store: { path: opts.path },
    wrapper: createInternalWrapper(opts.masterKey),
    mismatchMessage: MISMATCH,
    ...(opts.now === undefined ? {} : { now: opts.now }),
  });
}

/**
 * Master-key rotation of an internal key store from outside the key service (for
 * `latchkey keys rewrap` while it is stopped): opens it with `masterKey`, re-wraps every
 * content key under `newMasterKey` in one transaction, closes it. A running key service rotates
 * online with `WrappedKeyManager.rewrap` instead; another process still holding the old key
 * would get KEY_UNAVAILABLE until restarted with the new one.
 * @throws LatchkeyError KEY_UNAVAILABLE when `masterKey` does not match the store.
 * @throws RangeError when a master key is not 32 bytes.
 */
export async function rewrapInternalKeyStore(opts: {
  path: string;
  masterKey: Uint8Array;
  newMasterKey: Uint8Array;
}): Promise<{ rewrapped: number }> {
  checkMasterKey(opts.newMasterKey);
  const km = await openInternalKeyManager({ path: opts.path, masterKey: opts.masterKey });
  const next = createInternalWrapper(opts.newMasterKey);
  try {
    return await km.rewrap(next);
  } catch (err) {
    await next.close();
    throw err;
  } finally {
    await km.close();
  }
}
