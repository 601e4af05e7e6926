/**
 * The schema step that lets the participants table (membership.ts `participantsTable`) hold the
 * role `scanner` on a database made by the released steps, whose CHECK names only `visitor`,
 * `agent` and `supervisor`. Each store that keeps participants appends it as a step of its own
 * migrations (relay SQLite and PostgreSQL, key service SQLite and PostgreSQL); released steps
 * keep `participantsTable` as it was, so a new database gets the table through those and is
 * brought here by this step like an old one.
 *
 * SQLite cannot alter a CHECK: the step rebuilds the table (create, copy, drop, rename; the
 * migration's transaction makes it all or nothing, and nothing references `participants`, so
 * dropping it trips no foreign key while `contacts` stays the parent of the copy). PostgreSQL
 * drops the column's CHECK and adds the new one, which validates the rows it holds.
 */

/** The roles the participants table accepts after this step (@latchkey/protocol `Role`). */
const ROLES = `'visitor', 'agent', 'supervisor', 'scanner'`;

const SQLITE_STEP = `CREATE TABLE participants_scanner (
     contact_id     TEXT NOT NULL REFERENCES contacts (contact_id),
     participant_id TEXT NOT NULL,
     role           TEXT CHECK (role IN (${ROLES})),
     state          TEXT NOT NULL CHECK (state IN ('active', 'left', 'kicked')),
     joined_at      INTEGER NOT NULL,
     left_at        INTEGER,
     PRIMARY KEY (contact_id, participant_id)
   ) STRICT, WITHOUT ROWID;
   INSERT INTO participants_scanner (contact_id, participant_id, role, state, joined_at, left_at)
     SELECT contact_id, participant_id, role, state, joined_at, left_at FROM participants;
   DROP TABLE participants;
   ALTER TABLE participants_scanner RENAME TO participants;`;

/**
 * PostgreSQL names a column's unnamed CHECK `<table>_<column>_check`; the new one keeps that
 * name so that a later step finds it the same way.
 */
const POSTGRES_STEP = `ALTER TABLE participants
     DROP CONSTRAINT participants_role_check,
     ADD CONSTRAINT participants_role_check CHECK (role IN (${ROLES}));`;

/**
 * The step (SQL text, run in the migration's transaction) that lets `participants.role` be
 * `scanner`. A store appends it to its migrations once; it is released then and never changes.
 */
export function roleScannerStep(dialect: 'sqlite' | 'postgres'): string {
  return dialect === 'sqlite' ? SQLITE_STEP : POSTGRES_STEP;
}
