/**
 * The wrapped key store on PostgreSQL: the KeyManager contract (with a scan of the table
 * contents and, on a throwaway server, of its data files and WAL for unwrapped keys), plus what
 * only a shared server shows: several key services creating and rotating at once, migrations
 * once under the advisory lock, the separate-database guard, a wrong KEK, and rewrap.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { deriveKek, unwrapContentKey } from '@latchkey/crypto/wrap';
import { LatchkeyError } from '@latchkey/protocol';
import { keyManagerContract } from '../contract.ts';
import { bytesContain, codeOf, tempDir } from '../_helpers.ts';
import { testPostgres } from '../_postgres.ts';
import { createInternalWrapper } from '../../src/wrappers/internal.ts';
import { PG_KEYS_SCHEMA_VERSION, openPgWrappedKeyManager } from '../../src/stores/postgres.ts';

const master = new Uint8Array(32).fill(3);
const hex = (k: Uint8Array): string => Buffer.from(k).toString('hex');
const open = (url: string, m = master) =>
  openPgWrappedKeyManager({ url, wrapper: createInternalWrapper(m) });

async function sql<R extends pg.QueryResultRow>(url: string, text: string): Promise<R[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<R>(text)).rows;
  } finally {
    await c.end();
  }
}

/** Every value of every key store table, raw bytes for BYTEA, written to one file. */
async function dumpTables(url: string, file: string): Promise<void> {
  const parts: Buffer[] = [];
  for (const t of ['keys_meta', 'keys_contacts', 'keys_content_keys', 'keys_schema_version']) {
    for (const row of await sql<Record<string, unknown>>(url, `SELECT * FROM ${t}`)) {
      for (const v of Object.values(row))
        parts.push(Buffer.isBuffer(v) ? v : Buffer.from(String(v)));
    }
  }
  writeFileSync(file, Buffer.concat(parts));
}

const server = await testPostgres('PostgreSQL key store');
afterAll(() => server?.stop());

if (server) {
  keyManagerContract('PostgreSQL wrapped store', async () => {
    const url = await server.newDatabase();
    const { dir, cleanup } = tempDir();
    const dump = join(dir, 'tables.bin');
    return {
      backend: 'internal',
      open: () => open(url),
      files: async () => {
        await dumpTables(url, dump);
        return [dump, ...(await server.dataFiles(url))];
      },
      teardown: async () => cleanup(),
    };
  });

  describe('PostgreSQL wrapped store', () => {
    it('gives two key services creating the same contacts at once one key each', async () => {
      const url = await server.newDatabase();
      const [a, b] = await Promise.all([open(url), open(url)]);
      const ids = Array.from({ length: 20 }, (_, i) => `race${i}`);
      const got = await Promise.all(
        ids.flatMap((id) => [
          a.getContentKey(id),
          b.getContentKey(id),
          a.getContentKey(id),
          b.getContentKey(id),
        ]),
      );
      for (const id of ids) {
        const keys = new Set(got.filter((k) => k.contactId === id).map((k) => hex(k.key)));
        expect(keys.size).toBe(1);
        expect(got.filter((k) => k.contactId === id).every((k) => k.epoch === 0)).toBe(true);
      }
      const rows = await sql<{ contact_id: string; n: number }>(
        url,
        'SELECT contact_id, count(*)::int AS n FROM keys_content_keys GROUP BY contact_id',
      );
      expect(rows).toHaveLength(20);
      expect(rows.every((r) => r.n === 1)).toBe(true);
      // Stored bytes are wrapped: they unwrap under the KEK, bound to their contact and epoch.
      const kek = deriveKek(master);
      for (const r of await sql<{ contact_id: string; epoch: number; wrapped: Buffer }>(
        url,
        'SELECT contact_id, epoch, wrapped FROM keys_content_keys',
      )) {
        const key = await unwrapContentKey(kek, r.wrapped, {
          contactId: r.contact_id,
          epoch: r.epoch,
        });
        expect(hex(key)).toBe(
          hex(got.find((k) => k.contactId === r.contact_id)?.key ?? new Uint8Array()),
        );
        expect(r.wrapped.includes(Buffer.from(key))).toBe(false);
      }
      await Promise.all([a.close(), b.close()]);
    });

    it('scans data files that do hold the rows (the contract scan is not vacuous)', async () => {
      const url = await server.newDatabase();
      const km = await open(url);
      await km.getContentKey('probe');
      await km.close();
      const files = await server.dataFiles(url);
      if (files.length === 0) return; // not our server (LATCHKEY_TEST_PG_URL): only the table dump is scanned
      const [row] = await sql<{ wrapped: Buffer }>(
        url,
        "SELECT wrapped FROM keys_content_keys WHERE contact_id = 'probe'",
      );
      expect(bytesContain(files, row?.wrapped ?? new Uint8Array(1))).toBeDefined();
    });

    it('leaves no key behind when a destroy races rotations from another service', async () => {
      const url = await server.newDatabase();
      const [a, b] = await Promise.all([open(url), open(url)]);
      await a.getContentKey('hot');
      const rotations = Array.from({ length: 8 }, () => b.rotate('hot').catch((e: unknown) => e));
      await a.destroy('hot');
      await Promise.all(rotations);
      expect(await codeOf(b.getContentKey('hot'))).toBe('NOT_FOUND');
      expect(await sql(url, "SELECT 1 FROM keys_content_keys WHERE contact_id = 'hot'")).toEqual(
        [],
      );
      await Promise.all([a.close(), b.close()]);
    });

    it('migrates once at open, refuses a newer schema, a messages database and a wrong master key', async () => {
      const url = await server.newDatabase();
      const many = await Promise.all([1, 2, 3].map(() => open(url)));
      expect(await sql(url, 'SELECT version FROM keys_schema_version')).toEqual([
        { version: PG_KEYS_SCHEMA_VERSION },
      ]);
      expect(await codeOf(open(url, new Uint8Array(32).fill(9)))).toBe('KEY_UNAVAILABLE');
      await sql(url, 'UPDATE keys_schema_version SET version = 99');
      expect(await codeOf(open(url))).toBe('KEY_UNAVAILABLE');
      for (const m of many) await m.close();

      const relayDb = await server.newDatabase();
      await sql(relayDb, 'CREATE TABLE messages (contact_id TEXT)');
      const err = await open(relayDb).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toMatchObject({
        code: 'KEY_UNAVAILABLE',
        message: 'the key store must not share the messages database',
      });
      expect(await sql(relayDb, "SELECT to_regclass('keys_contacts') AS t")).toEqual([{ t: null }]);
    });

    it('re-wraps every key online under a new master key', async () => {
      const url = await server.newDatabase();
      const km = await open(url);
      const before = new Map<string, string>();
      for (let i = 0; i < 5; i++) {
        before.set(`c${i}/0`, hex((await km.getContentKey(`c${i}`)).key));
        await km.rotate(`c${i}`);
        before.set(`c${i}/1`, hex((await km.getContentKey(`c${i}`)).key));
      }
      const oldBlobs = new Set(
        (await sql<{ wrapped: Buffer }>(url, 'SELECT wrapped FROM keys_content_keys')).map((r) =>
          hex(r.wrapped),
        ),
      );
      const newMaster = new Uint8Array(32).fill(4);
      const reads = Promise.all(
        Array.from({ length: 20 }, (_, i) => km.getContentKey(`c${i % 5}`, i % 2)),
      );
      const writes = Promise.all([km.getContentKey('fresh'), km.rotate('c0')]);
      expect((await km.rewrap(createInternalWrapper(newMaster))).rewrapped).toBeGreaterThanOrEqual(
        10,
      );
      for (const k of await reads) expect(hex(k.key)).toBe(before.get(`${k.contactId}/${k.epoch}`));
      await writes;
      for (const [id, k] of before) {
        const [c, e] = id.split('/');
        expect(hex((await km.getContentKey(c ?? '', Number(e))).key)).toBe(k);
      }
      const fresh = await km.getContentKey('fresh');
      await km.close();
      for (const r of await sql<{ wrapped: Buffer }>(url, 'SELECT wrapped FROM keys_content_keys'))
        expect(oldBlobs.has(hex(r.wrapped))).toBe(false);
      expect(await codeOf(open(url))).toBe('KEY_UNAVAILABLE');
      const again = await open(url, newMaster);
      expect((await again.getContentKey('fresh')).key).toEqual(fresh.key);
      expect(hex((await again.getContentKey('c3', 1)).key)).toBe(before.get('c3/1'));
      await again.close();
    });

    it('owes a destroy notice durably until the wrapper takes it, once per contact', async () => {
      const url = await server.newDatabase();
      const told: string[] = [];
      let down = true;
      /** A wrapper whose backend takes destroy notices, down at first. */
      const telling = () => {
        const w = createInternalWrapper(master);
        w.destroyContact = async (contactId) => {
          if (down) throw new LatchkeyError('KEY_UNAVAILABLE', 'down');
          told.push(contactId);
        };
        return openPgWrappedKeyManager({ url, wrapper: w });
      };
      const a = await telling();
      await a.getContentKey('d1');
      await a.destroy('d1');
      await a.destroy('d1');
      await a.flushDestroyNotices();
      expect(await a.owedDestroyNotices()).toEqual(['d1']);
      await a.close();
      down = false;
      const b = await telling();
      await b.flushDestroyNotices();
      expect(await b.owedDestroyNotices()).toEqual([]);
      await b.destroy('d1');
      await b.flushDestroyNotices();
      expect(told).toEqual(['d1']);
      await b.close();
    });
  });
}
