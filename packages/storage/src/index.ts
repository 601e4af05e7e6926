/**
 * @latchkey/storage: what every Latchkey store shares, written once. This entry holds only the
 * errors; the drivers load from their own entries when a backend is chosen:
 * `@latchkey/storage/sqlite` (better-sqlite3) and `@latchkey/storage/postgres` (pg).
 */
export {
  SchemaTooNewError,
  StoreError,
  type StoreErrorCode,
  type StoreErrorOptions,
  type StoreFailure,
} from './errors.ts';
