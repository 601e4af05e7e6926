/**
 * @latchkey/relay: the relay library — authenticates participants, orders, stores and fans out
 * sealed envelopes over WebSocket (frames in @latchkey/protocol). Holds no key, opens nothing.
 * Backends for several relays load only when chosen, from their own entries:
 * `@latchkey/relay/postgres` (PgMessageStore, pg) and `@latchkey/relay/redis` (RedisFanout,
 * ioredis).
 */
export {
  createRelay,
  DEFAULT_RELAY_MAX_CONNECTIONS,
  type Relay,
  type RelayOptions,
  type RelayLogEvent,
  type TlsOptions,
} from './relay.ts';
export {
  Admission,
  clientIp,
  DEFAULT_MAX_CONNECTIONS_PER_IP,
  DEFAULT_PER_IP_RATE_LIMIT,
  DEFAULT_PER_IP_CONNECT_RATE,
  type AdmissionOptions,
  type Rejection,
} from './admission.ts';
export {
  SqliteMessageStore,
  STORE_SCHEMA_VERSION,
  StoreError,
  SchemaTooNewError,
  type StoreFailure,
  type MessageStore,
  type AppendResult,
  type HistoryPage,
  type StoreStats,
  type SqliteStoreOptions,
} from './store.ts';
export {
  KEEP_CIPHERTEXT,
  type ContactStore,
  type ContactPolicy,
  type ListContactsOptions,
  type RetentionHook,
} from './contacts.ts';
export { createAdminApi, type AdminApi, type AdminApiOptions } from './admin-api.ts';
export { SqliteQueueStore, type QueueStore } from './queue-store.ts';
export { sqliteShredder, deleteCiphertext, type CiphertextShredder } from './shred.ts';
export { GroupCommit, type GroupCommitOptions } from './group-commit.ts';
export {
  InProcessFanout,
  newRelayId,
  type Fanout,
  type FanoutEvent,
  type FanoutSubscription,
  type EnvelopeEvent,
  type DisconnectEvent,
  type RekeyEvent,
  type ControlEvent,
  type ResyncEvent,
} from './fanout.ts';
export { RelayMetrics, createOpsEndpoints, type OpsEndpointsOptions } from './metrics.ts';
export { DEFAULT_RATE_LIMIT, type RateLimitOptions } from './limiter.ts';
export { DEFAULT_QUOTA, resolveQuota, type Quota, type Usage } from './quota.ts';
export { checkOpenFiles, OPEN_FILES_RESERVE } from './open-files.ts';
export { parseIpAllowlist, ipAllowed } from '@latchkey/tokens';
export { WebhookService, type WebhookServiceOptions } from '@latchkey/webhooks';
