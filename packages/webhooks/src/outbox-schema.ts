/**
 * The webhook outbox's tables (outbox.ts): rows as stored, the schema steps for
 * @latchkey/storage's `migrateSqlite` (version kept in a row of `webhook_schema`, the file may be
 * shared), and the one step that needs the outbox key: sealing schema 1's plaintext secrets.
 */
import { chmodSync, existsSync } from 'node:fs';
import type { SqliteDatabase, SqliteStep } from '@latchkey/storage/sqlite';
import { isSealed, sealSecret } from './_secret-box.ts';

/** 1: plaintext secrets; 2: sealed secrets; 3: per-endpoint sequence numbers. */
export const OUTBOX_SCHEMA_VERSION = 3;

export interface SecretRow {
  /** The secret sealed under the outbox key (`_secret-box.ts`). */
  sealed: string;
  /** Stops signing after this time (ms); null = current. */
  expiresAt: number | null;
}

/** A secret as schema 1 stored it, in plaintext. */
export interface LegacySecretRow {
  secret: string;
  expiresAt: number | null;
}

export function signing(rows: SecretRow[], now: number): SecretRow[] {
  return rows.filter((s) => s.expiresAt === null || s.expiresAt > now);
}

/** The database and its WAL and shared-memory files. */
function dbFiles(path: string): string[] {
  return [path, `${path}-wal`, `${path}-shm`];
}

/** Owner-only modes on whichever of the files exist (SQLite gives -wal/-shm the main file's mode). */
export function tighten(path: string): void {
  if (process.platform === 'win32') return;
  for (const f of dbFiles(path)) if (existsSync(f)) chmodSync(f, 0o600);
}

export interface EndpointRow {
  id: string;
  url: string;
  events: string | null;
  description: string | null;
  created_at: number;
  secrets: string;
  last_attempt_at: number | null;
  last_success_at: number | null;
  last_error: string | null;
}

/** Where the outbox keeps its schema version: a row of its own, the file may be shared. */
export const VERSION = { table: 'webhook_schema', name: 'outbox' };

/**
 * Schema 1 or 2 -> 3: adds the endpoints' counters and numbers the deliveries already queued in
 * event order (1, 2, ... per endpoint); the columns are checked first, so a file left between
 * steps is finished on the next open.
 */
function addSequences(db: SqliteDatabase): void {
  const has = (table: string, col: string): boolean =>
    (db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).some(
      (c) => c.name === col,
    );
  if (!has('webhook_endpoints', 'next_seq'))
    db.exec('ALTER TABLE webhook_endpoints ADD COLUMN next_seq INTEGER NOT NULL DEFAULT 1');
  if (!has('webhook_deliveries', 'endpoint_seq')) {
    db.exec('ALTER TABLE webhook_deliveries ADD COLUMN endpoint_seq INTEGER');
    db.exec(`UPDATE webhook_deliveries SET endpoint_seq = (
               SELECT COUNT(*) FROM webhook_deliveries d
                WHERE d.endpoint_id = webhook_deliveries.endpoint_id
                  AND d.event_seq <= webhook_deliveries.event_seq)`);
    db.exec(`UPDATE webhook_endpoints SET next_seq = 1 + COALESCE(
               (SELECT MAX(endpoint_seq) FROM webhook_deliveries d WHERE d.endpoint_id = webhook_endpoints.id), 0)`);
  }
}

/** Step `i` migrates schema `i` (@latchkey/storage `migrateSqlite`). */
export const OUTBOX_STEPS: readonly SqliteStep[] = [
  // 0 -> 3: a new outbox gets the latest tables at once.
  (db) => {
    db.exec(`
        CREATE TABLE webhook_endpoints (
          id TEXT PRIMARY KEY, url TEXT NOT NULL, events TEXT, description TEXT,
          created_at INTEGER NOT NULL, secrets TEXT NOT NULL,
          last_attempt_at INTEGER, last_success_at INTEGER, last_error TEXT,
          next_seq INTEGER NOT NULL DEFAULT 1
        );
        CREATE TABLE webhook_events (
          seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
          payload TEXT NOT NULL, created_at INTEGER NOT NULL
        );
        CREATE TABLE webhook_deliveries (
          endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
          event_seq INTEGER NOT NULL REFERENCES webhook_events(seq),
          state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
          attempts INTEGER NOT NULL DEFAULT 0, first_at INTEGER NOT NULL, next_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL, last_error TEXT, endpoint_seq INTEGER,
          PRIMARY KEY (endpoint_id, event_seq)
        ) WITHOUT ROWID;
        CREATE INDEX webhook_deliveries_state ON webhook_deliveries (state, endpoint_id, event_seq);
`);
    return OUTBOX_SCHEMA_VERSION;
  },
  // 1 -> 2 changes no table, only how secrets are stored, and needs the outbox key
  // (asynchronous): #sealLegacy seals them and then writes version 3. Meanwhile the tables are
  // brought up to date, and the file stays at 1 until its secrets are sealed.
  (db) => {
    addSequences(db);
    return 1;
  },
  // 2 -> 3
  (db) => void addSequences(db),
];

/**
 * Schema 1 -> 2: seals every plaintext secret, bumps the version (an older build then refuses
 * the file instead of signing with garbage), and checkpoints the WAL so that the old pages,
 * overwritten in place thanks to secure_delete, leave no plaintext in either file.
 */
export async function sealLegacySecrets(
  db: SqliteDatabase,
  key: Uint8Array,
  closed: () => boolean,
): Promise<void> {
  const row = db.prepare("SELECT version FROM webhook_schema WHERE name = 'outbox'").get() as {
    version: number;
  };
  if (row.version >= 2) return;
  const rows = db.prepare('SELECT id, secrets FROM webhook_endpoints').all() as {
    id: string;
    secrets: string;
  }[];
  const updates: { id: string; before: string; after: string }[] = [];
  for (const r of rows) {
    const list = JSON.parse(r.secrets) as (LegacySecretRow | SecretRow)[];
    const sealed: SecretRow[] = [];
    for (const s of list) {
      if ('sealed' in s && isSealed(s.sealed)) sealed.push(s);
      else
        sealed.push({
          sealed: await sealSecret(key, r.id, (s as LegacySecretRow).secret),
          expiresAt: s.expiresAt,
        });
    }
    updates.push({ id: r.id, before: r.secrets, after: JSON.stringify(sealed) });
  }
  if (closed()) return;
  db.transaction(() => {
    const upd = db.prepare('UPDATE webhook_endpoints SET secrets = ? WHERE id = ? AND secrets = ?');
    for (const u of updates) upd.run(u.after, u.id, u.before);
    db.prepare("INSERT OR REPLACE INTO webhook_schema (name, version) VALUES ('outbox', ?)").run(
      OUTBOX_SCHEMA_VERSION,
    );
  })();
  db.pragma('wal_checkpoint(TRUNCATE)');
}
