/**
 * The PostgreSQL webhook outbox's tables (outbox-pg.ts): the same `webhook_*` tables as the
 * SQLite outbox (outbox-schema.ts, schema 3) with PostgreSQL types, plus each delivery's claim
 * (`claimed_by`, `lease_until`) and `webhook_meta` holding the outbox key's check value. The
 * version is a row of `webhook_schema_version`, migrated under an advisory lock of its own, so
 * the tables can share a database with the relay's message store or the key service's tables.
 */
import type { PgStep } from '@latchkey/storage/postgres';
import { exec, row, wait, type Flow, type Sql } from '@latchkey/storage';
import { openSecret, sealSecret } from './_secret-box.ts';
import { WebhookOutboxKeyError } from './outbox-key-error.ts';

/** 1: the tables of SQLite schema 3, claims and the key check. */
export const PG_OUTBOX_SCHEMA_VERSION = 1;

/** Advisory lock of the outbox's migrations ("lkwhks"): distinct from the relay's and keys'. */
export const PG_OUTBOX_LOCK = 0x6c6b77686b73;

export const PG_OUTBOX_VERSION_TABLE = 'webhook_schema_version';

/** Step `i` migrates version `i` (@latchkey/storage `migratePostgres`). */
export const PG_OUTBOX_STEPS: readonly PgStep[] = [
  `CREATE TABLE webhook_endpoints (
     id TEXT PRIMARY KEY, url TEXT NOT NULL, events TEXT, description TEXT,
     created_at BIGINT NOT NULL, secrets TEXT NOT NULL,
     last_attempt_at BIGINT, last_success_at BIGINT, last_error TEXT,
     next_seq BIGINT NOT NULL DEFAULT 1
   );
   CREATE TABLE webhook_events (
     seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
     payload TEXT NOT NULL, created_at BIGINT NOT NULL
   );
   CREATE TABLE webhook_deliveries (
     endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
     event_seq BIGINT NOT NULL REFERENCES webhook_events (seq),
     state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
     attempts INTEGER NOT NULL DEFAULT 0, first_at BIGINT NOT NULL, next_at BIGINT NOT NULL,
     updated_at BIGINT NOT NULL, last_error TEXT, endpoint_seq BIGINT NOT NULL,
     claimed_by TEXT, lease_until BIGINT,
     PRIMARY KEY (endpoint_id, event_seq)
   );
   CREATE INDEX webhook_deliveries_state ON webhook_deliveries (state, endpoint_id, event_seq);
   CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (endpoint_id, event_seq)
     WHERE state = 'pending';
   CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_seq);
   CREATE TABLE webhook_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);`,
];

/** What the key check value is sealed to (no endpoint id looks like it: they start `ep_`). */
const KEY_CHECK_ID = '#outbox-key-check';
const KEY_CHECK_TEXT = 'latchkey.v1.webhook-outbox-key-check';

/**
 * Checks that `key` is the database's outbox key: the first process stores a check value sealed
 * under its key (AES-256-GCM, `_secret-box.ts`); every later one must open it.
 * @throws WebhookOutboxKeyError MISMATCH when it does not open.
 */
export function* checkSharedKey(sql: Sql, key: Uint8Array, sealed: string): Flow<void> {
  yield* exec(
    sql,
    "INSERT INTO webhook_meta (name, value) VALUES ('key_check', ?) ON CONFLICT (name) DO NOTHING",
    [sealed],
  );
  const stored = yield* row<{ value: string }>(
    sql,
    "SELECT value FROM webhook_meta WHERE name = 'key_check'",
    [],
  );
  let ok = false;
  try {
    ok = (yield* wait(openSecret(key, KEY_CHECK_ID, stored?.value ?? ''))) === KEY_CHECK_TEXT;
  } catch {
    // another key (or an edited value): refused below
  }
  if (!ok)
    throw new WebhookOutboxKeyError(
      'MISMATCH',
      'the webhook outbox key is not the one this database was set up with: give every process sharing the database the same key file',
    );
}

/** The check value for `key` (sealed afresh; any sealing of the text under the key checks). */
export function keyCheckValue(key: Uint8Array): Promise<string> {
  return sealSecret(key, KEY_CHECK_ID, KEY_CHECK_TEXT);
}
