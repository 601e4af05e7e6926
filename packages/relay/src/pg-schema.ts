/**
 * The PostgreSQL message store's schema (pg-store.ts), versioned in table `schema_version`. A
 * step is never edited once released: a change is a new step.
 */
import { participantsTable, roleScannerStep } from '@latchkey/storage';

/** Schema version this code writes. */
export const PG_SCHEMA_VERSION = 4;

/** Step `i` migrates version `i` to `i + 1` (@latchkey/storage `migratePostgres`). */
export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE contacts (
     contact_id TEXT PRIMARY KEY,
     head_seq   BIGINT NOT NULL CHECK (head_seq >= 0),
     created_at BIGINT NOT NULL,
     state      TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed', 'expired')),
     closed_at  BIGINT,
     expires_at BIGINT NOT NULL
   );
   CREATE INDEX contacts_expiry ON contacts (state, expires_at);
   CREATE TABLE messages (
     contact_id TEXT NOT NULL REFERENCES contacts (contact_id),
     seq        BIGINT NOT NULL CHECK (seq >= 1),
     msg_id     TEXT NOT NULL,
     sender_id  TEXT NOT NULL,
     epoch      INTEGER NOT NULL,
     sent_at    BIGINT NOT NULL,
     stored_at  BIGINT NOT NULL,
     envelope   TEXT NOT NULL,
     PRIMARY KEY (contact_id, seq),
     UNIQUE (contact_id, msg_id)
   );
   ${participantsTable('postgres')}`,
  // v2: what each contact and each sender in it has stored, for the quotas (quota.ts). Read
  // and written under the contact's row lock, like head_seq, so every relay sees one count.
  `ALTER TABLE contacts ADD COLUMN stored_messages BIGINT NOT NULL DEFAULT 0,
                        ADD COLUMN stored_bytes BIGINT NOT NULL DEFAULT 0;
   CREATE TABLE sender_usage (
     contact_id TEXT NOT NULL REFERENCES contacts (contact_id),
     sender_id  TEXT NOT NULL,
     messages   BIGINT NOT NULL,
     bytes      BIGINT NOT NULL,
     PRIMARY KEY (contact_id, sender_id)
   );
   UPDATE contacts c SET stored_messages = s.n, stored_bytes = s.b
     FROM (SELECT contact_id, count(*) AS n, sum(octet_length(envelope)) AS b FROM messages GROUP BY contact_id) s
     WHERE c.contact_id = s.contact_id;
   INSERT INTO sender_usage (contact_id, sender_id, messages, bytes)
     SELECT contact_id, sender_id, count(*), sum(octet_length(envelope)) FROM messages GROUP BY contact_id, sender_id;`,
  // v3: participants may have the role scanner (@latchkey/storage role-scanner-migration.ts).
  roleScannerStep('postgres'),
  // v4: encrypted file uploads (files/meta.ts) and their bytes (files/pg-blob-store.ts), in
  // parts of at most 1 MiB keyed by their offset, so that a read streams part by part.
  `CREATE TABLE blobs (
     blob_id      TEXT PRIMARY KEY,
     contact_id   TEXT NOT NULL REFERENCES contacts (contact_id),
     uploader_id  TEXT NOT NULL,
     size         BIGINT NOT NULL CHECK (size >= 0),
     received     BIGINT NOT NULL DEFAULT 0 CHECK (received >= 0 AND received <= size),
     complete     INTEGER NOT NULL DEFAULT 0 CHECK (complete IN (0, 1)),
     created_at   BIGINT NOT NULL,
     completed_at BIGINT
   );
   CREATE INDEX blobs_contact ON blobs (contact_id, uploader_id, complete);
   CREATE INDEX blobs_incomplete ON blobs (complete, created_at);
   CREATE TABLE blob_parts (
     blob_id TEXT NOT NULL,
     off     BIGINT NOT NULL CHECK (off >= 0),
     data    BYTEA NOT NULL,
     PRIMARY KEY (blob_id, off)
   );`,
];

/** Advisory lock of these migrations ("latchkey" in ASCII, truncated). */
export const MIGRATION_LOCK = 0x6c61746368;
