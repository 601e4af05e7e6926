/**
 * The PostgreSQL key store's schema (postgres.ts): step `i` migrates version `i` to `i + 1`.
 * Table names carry a `keys_` prefix so that they can never be mistaken for the relay's.
 */

/** Schema version this code writes (`keys_schema_version`). */
export const PG_KEYS_SCHEMA_VERSION = 3;

export const MIGRATIONS: readonly string[] = [
  // 0 -> 1
  `CREATE TABLE keys_meta (
     name  TEXT PRIMARY KEY,
     value BYTEA NOT NULL
   );
   CREATE TABLE keys_contacts (
     contact_id    TEXT PRIMARY KEY,
     current_epoch INTEGER NOT NULL CHECK (current_epoch >= 0),
     created_at    BIGINT NOT NULL,
     destroyed_at  BIGINT
   );
   CREATE TABLE keys_content_keys (
     contact_id TEXT NOT NULL REFERENCES keys_contacts (contact_id),
     epoch      INTEGER NOT NULL CHECK (epoch >= 0),
     wrapped    BYTEA NOT NULL,
     created_at BIGINT NOT NULL,
     PRIMARY KEY (contact_id, epoch)
   );`,
  // 1 -> 2: key generations. A store that already holds tombstones had shreds under its one KEK.
  `CREATE TABLE keys_kek_generations (
     generation INTEGER PRIMARY KEY,
     state      TEXT NOT NULL CHECK (state IN ('current', 'retiring', 'destroyed')),
     created_at BIGINT NOT NULL,
     tainted_at BIGINT,
     retired_at BIGINT,
     rewrapped  INTEGER
   );
   CREATE UNIQUE INDEX keys_kek_generations_one_current ON keys_kek_generations (state) WHERE state = 'current';
   INSERT INTO keys_kek_generations (generation, state, created_at, tainted_at)
     VALUES (1, 'current', (extract(epoch FROM now()) * 1000)::bigint,
             (SELECT min(destroyed_at) FROM keys_contacts WHERE destroyed_at IS NOT NULL));`,
  // 2 -> 3: destroy notices owed to an external key manager (destroy-notices.ts).
  `CREATE TABLE keys_destroy_notices (
     contact_id TEXT PRIMARY KEY,
     owed_since BIGINT NOT NULL
   );`,
];
