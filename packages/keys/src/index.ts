/**
 * @latchkey/keys: the KeyManager contract (DESIGN.md "Key hierarchy"): the wrapped key store
 * (stores/: its logic once, on SQLite or PostgreSQL) opened with a KEK holder (wrappers/:
 * internal, the enterprise's key manager over HTTP, PKCS#11, KMIP) by `openKeyManager`, the
 * key-store model of an external key manager, plus loading of the master key and other secret
 * files, the key access log and membership table.
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
} from './wrappers/internal.ts';
export {
  openKeyManager,
  type KeyStoreLocation,
  type OpenKeyManagerOptions,
} from './open-key-manager.ts';
export {
  isGenerations,
  type KeyGenerationState,
  type KeyStoreOptions,
  type WrappedKeyManager,
} from './stores/key-store.ts';
export { openWrappedKeyManager, type WrappedKeyManagerOptions } from './stores/sqlite.ts';
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
} from './wrappers/http.ts';
export {
  openPkcs11KeyManager,
  createPkcs11Wrapper,
  createPkcs11Generations,
  type Pkcs11WrapperOptions,
  type Pkcs11KeyWrapper,
  type Pkcs11KeyAttributes,
} from './wrappers/pkcs11.ts';
export {
  openKmipKeyManager,
  createKmipWrapper,
  createKmipGenerations,
  type KmipWrapperOptions,
  type KmipKeyWrapper,
  type KmipKeyAttributes,
} from './wrappers/kmip.ts';
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
  type AccessLogHead,
  type AccessLogVerdict,
  type KeyAccessLogOptions,
} from './access-log.ts';
export {
  ACCESS_LOG_GENESIS,
  ACCESS_OUTCOMES,
  accessRecordHash,
  encodeAccessRecord,
  type AccessRecord,
  type AccessOutcome,
  type StoredAccessRecord,
  type ChainedAccessRecord,
  type AccessChainAlgorithm,
} from './access-record.ts';
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
/** The External Key Manager API's wire schemas, defined in @latchkey/protocol. */
export {
  ContentKeyB64,
  KM_API_VERSION,
  KM_PATHS,
  KeyId,
  KeyReason,
  KmDestroyRequest,
  KmErrorResponse,
  KmGenerateRequest,
  KmGenerateResponse,
  KmHealthResponse,
  KmKeyMetadata,
  KmStoreContact,
  KmStoreKey,
  KmStoreRequest,
  KmUnwrapRequest,
  KmUnwrapResponse,
  KmWrapRequest,
  KmWrapResponse,
  WrappedB64,
} from '@latchkey/protocol';
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
export { AccessFlows, type OwedRotation } from './access-flows.ts';
export type { Awaitable } from '@latchkey/storage';
export {
  LocalContactLocks,
  type AccessLogStore,
  type AccessTable,
  type Admission,
  type ContactLocks,
  type EpochTimes,
  type Leadership,
} from './service-state.ts';
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
  preparePrivateFile,
  decodeSecretText,
  type SecretFile,
} from './secret-file.ts';
