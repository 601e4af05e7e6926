/**
 * The SQLite message store's schema (store.ts), by `PRAGMA user_version`. A step is never
 * edited once released: a change is a new step.
 */
import { DEFAULT_CONTACT_TTL_MS } from '@latchkey/protocol';
import { participantsTable, roleScannerStep } from '@latchkey/storage';

/** Schema version this code writes; migrations below bring older files up to it. */
export const STORE_SCHEMA_VERSION = 6;

/** Step `i` migrates user_version `i` to `i + 1` (@latchkey/storage `migrateSqlite`). */
export const MIGRATIONS: readonly string[] = [
  // v1: contacts with their head seq, and the per-contact log.
  `CREATE TABLE contacts (
     contact_id TEXT PRIMARY KEY,
     head_seq   INTEGER NOT NULL CHECK (head_seq >= 0),
     created_at INTEGER NOT NULL
   ) STRICT, WITHOUT ROWID;
   CREATE TABLE messages (
     contact_id TEXT NOT NULL REFERENCES contacts (contact_id),
     seq        INTEGER NOT NULL CHECK (seq >= 1),
     msg_id     TEXT NOT NULL,
     sender_id  TEXT NOT NULL,
     epoch      INTEGER NOT NULL,
     sent_at    INTEGER NOT NULL,
     stored_at  INTEGER NOT NULL,
     envelope   TEXT NOT NULL,
     PRIMARY KEY (contact_id, seq),
     UNIQUE (contact_id, msg_id)
   ) STRICT, WITHOUT ROWID;`,
  // v2: contact lifecycle (open -> closed -> expired) and membership.
  `ALTER TABLE contacts ADD COLUMN state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed', 'expired'));
   ALTER TABLE contacts ADD COLUMN closed_at INTEGER;
   ALTER TABLE contacts ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;
   UPDATE contacts SET expires_at = created_at + ${DEFAULT_CONTACT_TTL_MS};
   CREATE INDEX contacts_expiry ON contacts (state, expires_at);
   ${participantsTable('sqlite')}`,
  // v3: messages in an ordinary rowid table with two unique indexes. Rows of 1-6 KB in a
  // WITHOUT ROWID table live inside the primary-key B-tree, which SQLite advises against for
  // large rows; appending cost ~5x more per message (docs/benchmarks.md "Known bottlenecks").
  `CREATE TABLE messages_v3 (
     contact_id TEXT NOT NULL REFERENCES contacts (contact_id),
     seq        INTEGER NOT NULL CHECK (seq >= 1),
     msg_id     TEXT NOT NULL,
     sender_id  TEXT NOT NULL,
     epoch      INTEGER NOT NULL,
     sent_at    INTEGER NOT NULL,
     stored_at  INTEGER NOT NULL,
     envelope   TEXT NOT NULL
   ) STRICT;
   INSERT INTO messages_v3 (contact_id, seq, msg_id, sender_id, epoch, sent_at, stored_at, envelope)
     SELECT contact_id, seq, msg_id, sender_id, epoch, sent_at, stored_at, envelope FROM messages ORDER BY contact_id, seq;
   DROP TABLE messages;
   ALTER TABLE messages_v3 RENAME TO messages;
   CREATE UNIQUE INDEX messages_seq ON messages (contact_id, seq);
   CREATE UNIQUE INDEX messages_msg_id ON messages (contact_id, msg_id);`,
  // v4: what each contact and each sender in it has stored, for the quotas (quota.ts).
  `ALTER TABLE contacts ADD COLUMN stored_messages INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE contacts ADD COLUMN stored_bytes INTEGER NOT NULL DEFAULT 0;
   CREATE TABLE sender_usage (
     contact_id TEXT NOT NULL REFERENCES contacts (contact_id),
     sender_id  TEXT NOT NULL,
     messages   INTEGER NOT NULL,
     bytes      INTEGER NOT NULL,
     PRIMARY KEY (contact_id, sender_id)
   ) STRICT, WITHOUT ROWID;
   UPDATE contacts SET
     stored_messages = (SELECT count(*) FROM messages m WHERE m.contact_id = contacts.contact_id),
     stored_bytes = (SELECT coalesce(sum(length(CAST(m.envelope AS BLOB))), 0) FROM messages m WHERE m.contact_id = contacts.contact_id);
   INSERT INTO sender_usage (contact_id, sender_id, messages, bytes)
     SELECT contact_id, sender_id, count(*), sum(length(CAST(envelope AS BLOB))) FROM messages GROUP BY contact_id, sender_id;`,
  // v5: participants may have the role scanner (@latchkey/storage role-scanner-migration.ts).
  roleScannerStep('sqlite'),
  // v6: encrypted file uploads (files/meta.ts): one row per blob, its bytes in the blob store.
  // `size` is declared at creation and counts towards the contact's file quota from then on.
  `CREATE TABLE blobs (
     blob_id     TEXT PRIMARY KEY,
     contact_id  TEXT NOT NULL REFERENCES contacts (contact_id),
     uploader_id TEXT NOT NULL,
     size        INTEGER NOT NULL CHECK (size >= 0),
     received    INTEGER NOT NULL DEFAULT 0 CHECK (received >= 0 AND received <= size),
     complete    INTEGER NOT NULL DEFAULT 0 CHECK (complete IN (0, 1)),
     created_at  INTEGER NOT NULL,
     completed_at INTEGER
   ) STRICT, WITHOUT ROWID;
   CREATE INDEX blobs_contact ON blobs (contact_id, uploader_id, complete);
   CREATE INDEX blobs_incomplete ON blobs (complete, created_at);`,
];
