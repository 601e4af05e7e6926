/**
 * The key service's own state on PostgreSQL (issue 17; service-state.ts): what each key service
 * kept in SQLite files under its data directory, in the database its wrapped keys are in
 * (`--keys-store`), so that every key service of a cluster shares it. Step `i` migrates version
 * `i` to `i + 1` (`keyd_schema_version`). Membership columns are @latchkey/storage's
 * (`participantsTable`); the access log is append-only (a trigger refuses UPDATE and DELETE).
 */
import { participantsTable, roleScannerStep } from '@latchkey/storage';

export const PG_SERVICE_SCHEMA_VERSION = 2;

export const SERVICE_MIGRATIONS: readonly string[] = [
  // 0 -> 1
  `CREATE TABLE contacts (
     contact_id TEXT PRIMARY KEY,
     state      TEXT NOT NULL CHECK (state IN ('open', 'closed', 'expired')),
     created_at BIGINT NOT NULL,
     closed_at  BIGINT,
     expires_at BIGINT NOT NULL
   );
   CREATE INDEX contacts_expiry ON contacts (state, expires_at);
   ${participantsTable('postgres')}
   CREATE TABLE owed_rotations (
     contact_id     TEXT PRIMARY KEY REFERENCES contacts (contact_id),
     action         TEXT NOT NULL CHECK (action IN ('kick', 'transfer')),
     participant_id TEXT NOT NULL,
     seq            BIGINT NOT NULL,
     since          BIGINT NOT NULL,
     state          TEXT NOT NULL CHECK (state IN ('owed', 'done')),
     epoch          BIGINT,
     attempts       INTEGER NOT NULL DEFAULT 0,
     last_error     TEXT
   );
   CREATE INDEX owed_rotations_state ON owed_rotations (state);
   CREATE TABLE key_access_log (
     seq            BIGINT PRIMARY KEY,
     contact_id     TEXT NOT NULL,
     epoch          BIGINT NOT NULL,
     participant_id TEXT NOT NULL,
     time           BIGINT NOT NULL,
     outcome        TEXT NOT NULL,
     hash           BYTEA NOT NULL
   );
   CREATE TABLE key_access_log_cursors (
     name TEXT PRIMARY KEY,
     seq  BIGINT NOT NULL
   );
   CREATE FUNCTION key_access_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN RAISE EXCEPTION 'key_access_log is append-only'; END $$;
   CREATE TRIGGER key_access_log_no_change BEFORE UPDATE OR DELETE ON key_access_log
     FOR EACH ROW EXECUTE FUNCTION key_access_log_append_only();
   CREATE TABLE epoch_times (
     contact_id TEXT NOT NULL,
     epoch      BIGINT NOT NULL,
     since      BIGINT NOT NULL,
     PRIMARY KEY (contact_id, epoch)
   );
   CREATE TABLE keyd_secrets (
     name  TEXT PRIMARY KEY,
     value BYTEA NOT NULL
   );`,
  // 1 -> 2: participants may have the role scanner (@latchkey/storage role-scanner-migration.ts).
  roleScannerStep('postgres'),
];
