/**
 * `@latchkey/relay/postgres`: the PostgreSQL message and contact store for several relays
 * sharing one database (docs/operations.md). Its own entry, so that `pg` loads only when a relay
 * chooses this backend.
 */
export { PgMessageStore, PG_SCHEMA_VERSION, type PgStoreOptions } from './pg-store.ts';
