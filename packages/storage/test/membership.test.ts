/**
 * The membership flows on both drivers: SQLite (runSqlite) always, PostgreSQL (runPostgres) with
 * LATCHKEY_TEST_PG_URL (skipped with the reason printed otherwise, failing under CI=true).
 * The relay's store contract tests and the key service's tests run them through their stores.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LatchkeyError, type ContactInfo } from '@latchkey/protocol';
import type { Flow } from '../src/flow.ts';
import { Membership } from '../src/membership.ts';
import { openPool, runPostgres, type PgPool } from '../src/postgres.ts';
import type { Sql } from '../src/sql.ts';
import { openSqlite, runSqlite, type SqliteDatabase } from '../src/sqlite.ts';

const TABLES = `
  CREATE TABLE contacts (
    contact_id TEXT PRIMARY KEY, state TEXT NOT NULL, created_at BIGINT NOT NULL,
    closed_at BIGINT, expires_at BIGINT NOT NULL, head BIGINT NOT NULL);
  CREATE TABLE participants (
    contact_id TEXT NOT NULL REFERENCES contacts (contact_id), participant_id TEXT NOT NULL,
    role TEXT, state TEXT NOT NULL, joined_at BIGINT NOT NULL, left_at BIGINT,
    PRIMARY KEY (contact_id, participant_id));`;

const POLICY = { maxParticipants: 2, contactTtlMs: 1000 };
const T = 1_000_000;

type Run = <T>(flow: (m: Membership) => Flow<T>) => Promise<T>;

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return LatchkeyError.is(err) ? err.code : String(err);
  }
}

function contract(name: string, setup: () => Promise<{ run: Run; close(): Promise<void> }>) {
  describe(name, () => {
    let run: Run;
    let close: () => Promise<void>;
    beforeAll(async () => {
      ({ run, close } = await setup());
    });
    afterAll(() => close?.());

    it('admits within the limit and by role, kicks, transfers, closes and expires', async () => {
      const a = await run((m) => m.admit('c1', 'v', 'visitor', T, POLICY));
      expect(a).toMatchObject({ contactId: 'c1', state: 'open', expiresAt: T + 1000 });
      await run((m) => m.admit('c1', 'a1', 'agent', T + 1, POLICY));
      expect(await codeOf(run((m) => m.admit('c1', 'a2', 'agent', T + 2, POLICY)))).toBe(
        'CONTACT_FULL',
      );
      expect(await codeOf(run((m) => m.admit('c1', 'v', 'agent', T + 2, POLICY)))).toBe(
        'FORBIDDEN',
      );
      expect(await codeOf(run((m) => m.transfer('c1', 'v', 'a2', T + 3)))).toBe('FORBIDDEN');
      expect(await run((m) => m.transfer('c1', 'a1', 'a2', T + 3))).toBe(true);
      expect(await run((m) => m.kick('c1', 'ghost', T + 4))).toBe(true);
      expect(await run((m) => m.kick('c1', 'ghost', T + 5))).toBe(false);
      expect(await codeOf(run((m) => m.admit('c1', 'ghost', 'visitor', T + 6, POLICY)))).toBe(
        'FORBIDDEN',
      );
      const info: ContactInfo = await run((m) => m.info('c1', T + 6));
      expect(info.participants.map((p) => [p.participantId, p.role, p.state])).toEqual([
        ['v', 'visitor', 'active'],
        ['a1', 'agent', 'left'],
        ['a2', 'agent', 'active'],
        ['ghost', null, 'kicked'],
      ]);
      await run((m) => m.close('c1', T + 7));
      await run((m) => m.admit('c2', 'v', 'visitor', T + 7, POLICY));
      expect(
        (await run((m) => m.list({ state: 'closed', limit: 10 }, T + 8))).map((c) => c.contactId),
      ).toEqual(['c1']);
      expect(
        (await run((m) => m.list({ after: 'c1', limit: 10 }, T + 8))).map((c) => c.contactId),
      ).toEqual(['c2']);
      await run((m) => m.setExpiry('c2', T + 9, T + 8));
      expect(await run((m) => m.expireDue(T + 1500))).toEqual(['c1', 'c2']);
      expect(await codeOf(run((m) => m.close('c2', T + 1500)))).toBe('CONTACT_EXPIRED');
      expect(await codeOf(run((m) => m.close('nope', T)))).toBe('NOT_FOUND');
      expect(await run((m) => m.contact('nope', T))).toBeNull();
    });
  });
}

contract('Membership on SQLite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'latchkey-membership-'));
  const db: SqliteDatabase = openSqlite(join(dir, 'm.db'));
  db.exec(TABLES);
  const tables = { contactTtlMs: 1000, newContact: { head: 0 } };
  return {
    run: (flow) =>
      Promise.resolve().then(() => runSqlite(db, (sql: Sql) => flow(new Membership(sql, tables)))),
    async close() {
      db.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

const url = process.env.LATCHKEY_TEST_PG_URL;
if (!url) {
  const reason = '@latchkey/storage membership on PostgreSQL: needs LATCHKEY_TEST_PG_URL';
  if (process.env.CI === 'true') throw new Error(reason);
  console.warn(`skipping ${reason}`);
} else {
  contract('Membership on PostgreSQL', async () => {
    const name = `lk_members_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const u = new URL(url);
    u.pathname = `/${name}`;
    const pool: PgPool = openPool({ url: u.toString(), max: 3 });
    await pool.query(TABLES);
    const tables = { contactTtlMs: 1000, newContact: { head: 0 } };
    return {
      run: (flow) => runPostgres(pool, (sql) => flow(new Membership(sql, tables))),
      close: () => pool.end(),
    };
  });
}
