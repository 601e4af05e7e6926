/**
 * @latchkey/storage: what every Latchkey store shares, written once. This entry loads no
 * database driver: errors, the contact-membership flows and the `Sql` they speak. The drivers
 * load from their own entries when a backend is chosen: `@latchkey/storage/sqlite`
 * (better-sqlite3) and `@latchkey/storage/postgres` (pg).
 */
export {
  SchemaTooNewError,
  StoreError,
  type StoreErrorCode,
  type StoreErrorOptions,
  type StoreFailure,
} from './errors.ts';
export { preparePrivateFile } from './private-file.ts';
export { runAsync, runSync, wait, type Awaitable, type Flow } from './flow.ts';
export { exec, forUpdate, row, rows, type Sql, type SqlValue } from './sql.ts';
export {
  FlowContactStore,
  isContactStore,
  type ContactPolicy,
  type ContactStore,
  type ListContactsOptions,
} from './contact-store.ts';
export { Membership, participantsTable, type ContactTables } from './membership.ts';
export { roleScannerStep } from './role-scanner-migration.ts';
