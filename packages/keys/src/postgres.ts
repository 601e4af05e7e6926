/**
 * `@latchkey/keys/postgres`: the wrapped key store on PostgreSQL directly, for callers that
 * want its options; `openKeyManager({ store: { url } })` loads it on demand. Kept out of the
 * main entry so that a SQLite user never loads `pg`.
 */
export {
  openPgWrappedKeyManager,
  PG_KEYS_SCHEMA_VERSION,
  type PgWrappedKeyManagerOptions,
} from './stores/postgres.ts';
export {
  openPgServiceState,
  PG_SERVICE_SCHEMA_VERSION,
  type PgServiceState,
  type PgServiceStateOptions,
} from './stores/pg-service-state.ts';
export { importSqliteMembership } from './stores/pg-service-import.ts';
