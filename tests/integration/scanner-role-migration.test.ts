/**
 * The schema step that admits the role `scanner` (@latchkey/storage role-scanner-migration.ts)
 * on databases made before it, in every store that keeps participants: the relay's SQLite and
 * PostgreSQL message stores and the key service's SQLite and PostgreSQL access tables. Each old
 * database is built by the released steps that precede the scanner step, holds a visitor, and
 * refuses a scanner; opened by the store, it admits one and keeps the visitor, and its CHECK
 * still refuses a role that does not exist.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_CONTACT_TTL_MS, type ContactInfo } from '@latchkey/protocol';
import { SqliteMessageStore } from '@latchkey/relay';
import { PgMessageStore } from '@latchkey/relay/postgres';
import { testPostgres } from '../../packages/keys/test/_postgres.ts';
import {
  MIGRATIONS as ACCESS_MIGRATIONS,
  SqliteAccessStore,
} from '../../packages/keys/src/access-store.ts';
import { SERVICE_MIGRATIONS } from '../../packages/keys/src/stores/pg-service-schema.ts';
import { openPgServiceState } from '../../packages/keys/src/stores/pg-service-state.ts';
import { MIGRATIONS as RELAY_PG_MIGRATIONS } from '../../packages/relay/src/pg-schema.ts';
import { MIGRATIONS as RELAY_SQLITE_MIGRATIONS } from '../../packages/relay/src/sqlite-schema.ts';
import { migratePostgres, openPool } from '../../packages/storage/src/postgres.ts';
import { roleScannerStep } from '../../packages/storage/src/role-scanner-migration.ts';
import { migrateSqlite, openSqlite } from '../../packages/storage/src/sqlite.ts';

const now = Date.now();
const policy = { maxParticipants: 10, contactTtlMs: DEFAULT_CONTACT_TTL_MS };
const scanner = { contactId: 'c-old', participantId: 'scanner-1', role: 'scanner' } as const;

/** The released steps before the scanner step (which each store has exactly once). */
function before(steps: readonly string[], dialect: 'sqlite' | 'postgres'): string[] {
  const at = steps.indexOf(roleScannerStep(dialect));
  expect(at).toBeGreaterThan(0);
  expect(steps.lastIndexOf(roleScannerStep(dialect))).toBe(at);
  return steps.slice(0, at);
}

/** A contact as an old release wrote it (relay rows also have head_seq); args: id, created, expires. */
function contactSql(relay: boolean): string {
  return relay
    ? `INSERT INTO contacts (contact_id, head_seq, created_at, state, expires_at) VALUES (?, 0, ?, 'open', ?)`
    : `INSERT INTO contacts (contact_id, created_at, state, expires_at) VALUES (?, ?, 'open', ?)`;
}
/** A participant row; args: contact, participant, role, joined. */
const PARTICIPANT_SQL = `INSERT INTO participants (contact_id, participant_id, role, state, joined_at) VALUES (?, ?, ?, 'active', ?)`;

/** The same statement with PostgreSQL's numbered parameters. */
function pgSql(sql: string): string {
  let i = 0;
  return sql.replace(/\?/g, () => `$${++i}`);
}

function expectBothActive(info: ContactInfo): void {
  const roles = Object.fromEntries(info.participants.map((x) => [x.participantId, x]));
  expect(roles['visitor-1']).toMatchObject({ role: 'visitor', state: 'active' });
  expect(roles['scanner-1']).toMatchObject({ role: 'scanner', state: 'active' });
}

describe('the scanner role on SQLite databases made before it', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  async function oldSqlite(steps: string[], relay: boolean): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'latchkey-role-'));
    dirs.push(dir);
    const path = join(dir, 'old.db');
    const db = openSqlite(path);
    try {
      migrateSqlite(db, steps, 'old database');
      db.prepare(contactSql(relay)).run('c-old', now - 1000, now + DEFAULT_CONTACT_TTL_MS);
      db.prepare(PARTICIPANT_SQL).run('c-old', 'visitor-1', 'visitor', now - 1000);
      // The old CHECK refuses a scanner: what the step is for.
      expect(() => db.prepare(PARTICIPANT_SQL).run('c-old', 'scanner-0', 'scanner', now)).toThrow(
        /CHECK constraint failed/,
      );
    } finally {
      db.close();
    }
    return path;
  }

  function checkAfter(path: string): void {
    const db = openSqlite(path);
    try {
      expect(db.pragma('foreign_key_check')).toEqual([]);
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      expect(() => db.prepare(PARTICIPANT_SQL).run('c-old', 'robot-1', 'robot', now)).toThrow(
        /CHECK constraint failed/,
      );
      // The copy still belongs to its contact: a participant of no contact is refused.
      expect(() => db.prepare(PARTICIPANT_SQL).run('c-none', 'agent-9', 'agent', now)).toThrow(
        /FOREIGN KEY constraint failed/,
      );
    } finally {
      db.close();
    }
  }

  it('relay message store: an old file admits a scanner after migrating', async () => {
    const path = await oldSqlite(before(RELAY_SQLITE_MIGRATIONS, 'sqlite'), true);
    const store = new SqliteMessageStore({ path });
    try {
      expectBothActive(await store.admit(scanner, now, policy));
    } finally {
      await store.close();
    }
    checkAfter(path);
  });

  it('key service access table: an old file admits a scanner after migrating', async () => {
    const path = await oldSqlite(before(ACCESS_MIGRATIONS, 'sqlite'), false);
    const store = new SqliteAccessStore({ path });
    try {
      expectBothActive(store.admit(scanner, now));
    } finally {
      store.close();
    }
    checkAfter(path);
  });
});

const server = await testPostgres('the scanner role on PostgreSQL');
afterAll(() => server?.stop());

describe.skipIf(!server)('the scanner role on PostgreSQL databases made before it', () => {
  async function oldPostgres(steps: string[], versionTable: string, relay: boolean) {
    const url = await server!.newDatabase();
    const pool = openPool({ url, max: 2 });
    try {
      await migratePostgres(pool, { lock: 1, versionTable, steps, what: 'old database' });
      await pool.query(pgSql(contactSql(relay)), [
        'c-old',
        now - 1000,
        now + DEFAULT_CONTACT_TTL_MS,
      ]);
      await pool.query(pgSql(PARTICIPANT_SQL), ['c-old', 'visitor-1', 'visitor', now - 1000]);
      await expect(
        pool.query(pgSql(PARTICIPANT_SQL), ['c-old', 'scanner-0', 'scanner', now]),
      ).rejects.toMatchObject({ code: '23514', constraint: 'participants_role_check' });
    } finally {
      await pool.end();
    }
    return url;
  }

  async function checkAfter(url: string): Promise<void> {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await expect(
        client.query(pgSql(PARTICIPANT_SQL), ['c-old', 'robot-1', 'robot', now]),
      ).rejects.toMatchObject({ code: '23514', constraint: 'participants_role_check' });
    } finally {
      await client.end();
    }
  }

  it('relay message store: an old database admits a scanner after migrating', async () => {
    const url = await oldPostgres(before(RELAY_PG_MIGRATIONS, 'postgres'), 'schema_version', true);
    const store = await PgMessageStore.open({ url });
    try {
      expectBothActive(await store.admit(scanner, now, policy));
    } finally {
      await store.close();
    }
    await checkAfter(url);
  });

  it('key service state: an old database admits a scanner after migrating', async () => {
    const url = await oldPostgres(
      before(SERVICE_MIGRATIONS, 'postgres'),
      'keyd_schema_version',
      false,
    );
    const state = await openPgServiceState({ url, masterKey: new Uint8Array(32).fill(9) });
    try {
      expectBothActive(await state.access.admit(scanner, now));
    } finally {
      await state.close();
    }
    await checkAfter(url);
  });
});
