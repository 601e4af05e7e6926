/**
 * @latchkey/keys: the KeyManager contract (DESIGN.md "Key hierarchy") and its adapters, plus
 * loading of the master key and other secret files.
 */
export type { ContentKey, KeyManager, KeyManagerHealth } from './key-manager.ts';
export {
  openInternalKeyManager,
  INTERNAL_SCHEMA_VERSION,
  type InternalKeyManagerOptions,
} from './adapters/internal.ts';
export { SqliteAccessStore, ACCESS_SCHEMA_VERSION, type AccessStoreOptions } from './access-store.ts';
export {
  resolveMasterKey,
  MASTER_KEY_ENV,
  MASTER_KEY_BYTES,
  type ResolvedMasterKey,
} from './master-key.ts';
export {
  loadOrCreateSecretFile,
  loadOrCreateSecret,
  createPrivateFile,
  readPrivateFile,
  decodeSecretText,
  type SecretFile,
} from './secret-file.ts';
