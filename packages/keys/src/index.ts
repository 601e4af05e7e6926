/**
 * @latchkey/keys: the KeyManager contract (DESIGN.md "Key hierarchy") and its adapters, plus
 * loading of the master key and other secret files.
 */
export type { ContentKey, KeyManager, KeyManagerHealth } from './key-manager.ts';
export type { KeyWrapper, KekGenerations, WrapRequest, WrapReason } from './key-wrapper.ts';
export { completeShreds, formatShredCompletion, type ShredCompletion } from './shred-completion.ts';
export {
  openInternalKeyManager,
  createInternalWrapper,
  rewrapInternalKeyStore,
  INTERNAL_SCHEMA_VERSION,
  type InternalKeyManagerOptions,
} from './adapters/internal.ts';
export {
  openWrappedKeyManager,
  type KeyGenerationState,
  type WrappedKeyManager,
  type WrappedKeyManagerOptions,
} from './adapters/wrapped.ts';
export {
  openPgWrappedKeyManager,
  PG_KEYS_SCHEMA_VERSION,
  type PgWrappedKeyManagerOptions,
} from './adapters/pg-wrapped.ts';
export {
  openHttpKeyManager,
  openHttpKeyStoreManager,
  createHttpWrapper,
  type HttpWrapperOptions,
  type HttpKeyWrapper,
  type HttpKeyStoreOptions,
  type HttpKeyStoreManager,
  type KmAuth,
  type KmClientOptions,
  type KmFailure,
  type KmFailureKind,
  type BreakerState,
} from './adapters/http.ts';
export {
  openPkcs11KeyManager,
  createPkcs11Wrapper,
  createPkcs11Generations,
  type Pkcs11WrapperOptions,
  type Pkcs11KeyWrapper,
  type Pkcs11KeyAttributes,
} from './adapters/pkcs11.ts';
export {
  openKmipKeyManager,
  createKmipWrapper,
  createKmipGenerations,
  type KmipWrapperOptions,
  type KmipKeyWrapper,
  type KmipKeyAttributes,
} from './adapters/kmip.ts';
export {
  KmipClient,
  KmipResultError,
  type KmipClientOptions,
  type KmipAttribute,
  type KmipCreateOptions,
} from './kmip/client.ts';
export {
  encodeTtlv,
  decodeTtlv,
  TtlvError,
  type TtlvItem,
  type TtlvType,
  type TtlvLimits,
} from './kmip/ttlv.ts';
export {
  KeyAccessLog,
  ACCESS_LOG_GENESIS,
  ACCESS_OUTCOMES,
  accessRecordHash,
  encodeAccessRecord,
  type AccessRecord,
  type AccessOutcome,
  type StoredAccessRecord,
  type ChainedAccessRecord,
  type AccessChainAlgorithm,
  type AccessLogHead,
  type AccessLogVerdict,
  type KeyAccessLogOptions,
} from './access-log.ts';
export {
  ACCESS_SD_ID,
  ACCESS_APP_NAME,
  accessEventType,
  accessEventData,
  accessRecordFromWebhook,
  escapeSdValue,
  formatAccessSyslog,
  frameOctetCounted,
  parseAccessSyslog,
  splitOctetCounted,
  syslogHostname,
  verifyAccessStream,
  type AccessEventType,
  type AccessEventData,
  type AccessStreamVerdict,
  type ReceivedAccessRecord,
  type VerifyAccessStreamOptions,
} from './access-stream.ts';
export * from './external-api.ts';
export {
  signKmRequest,
  createKmRequestVerifier,
  memoryNonceStore,
  KM_AUTH_HEADERS,
  KM_AUTH_WINDOW_MS,
  type SignedRequest,
  type KmAuthResult,
  type KmRequestVerifierOptions,
} from './external-auth.ts';
export {
  SqliteAccessStore,
  ACCESS_SCHEMA_VERSION,
  type AccessStoreOptions,
} from './access-store.ts';
export { EpochClock } from './epoch-clock.ts';
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
