/**
 * The file API on PostgreSQL: blob metadata in the shared message database and the ciphertext
 * in `blob_parts` (parts of 1 MiB), over real HTTP on 127.0.0.1. An upload of several parts in
 * several PATCHes, resumed after a request dropped mid-body; ranges across part boundaries;
 * the quota counted in the database; two relays on one database (upload through one, link and
 * download through the other); a kicked participant's link; deleting a contact's blobs and the
 * stale-upload sweep leave no part behind.
 *
 * Needs LATCHKEY_TEST_PG_URL (a server where databases may be created); skipped with the reason
 * printed without it, failing under CI=true.
 */
import { request } from 'node:http';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UploadState } from '@latchkey/protocol';
import { createRelay, type Relay } from '../src/index.ts';
import { PgMessageStore } from '../src/pg-store.ts';
import { Caller, errorCode, randomData } from './_files.ts';
import { SECRET } from './_helpers.ts';

const PG = process.env.LATCHKEY_TEST_PG_URL;
if (!PG) {
  const reason = 'files on PostgreSQL: needs LATCHKEY_TEST_PG_URL';
  if (process.env.CI === 'true') throw new Error(reason);
  console.warn(`skipping ${reason}`);
}

let dbUrl: string;
let dbName: string;
const stores: PgMessageStore[] = [];
const relays: Relay[] = [];

async function admin<T>(fn: (c: pg.Client) => Promise<T>, url = PG as string): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

async function relayOn(files: Parameters<typeof createRelay>[0]['files'] = {}): Promise<string> {
  const store = await PgMessageStore.open({ url: dbUrl, maxConnections: 4 });
  stores.push(store);
  const relay = createRelay({ store, apiSecret: SECRET, files });
  relays.push(relay);
  const { url } = await relay.listen({ host: '127.0.0.1', port: 0 });
  return url.replace(/^ws/, 'http');
}

const parts = (blob?: string): Promise<number> =>
  admin(
    async (c) =>
      Number(
        (
          await c.query<{ n: string }>(
            blob === undefined
              ? 'SELECT count(*) AS n FROM blob_parts'
              : 'SELECT count(*) AS n FROM blob_parts WHERE blob_id = $1',
            blob === undefined ? [] : [blob],
          )
        ).rows[0]?.n,
      ),
    dbUrl,
  );

beforeAll(async () => {
  if (!PG) return;
  dbName = `lk_files_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  await admin((c) => c.query(`CREATE DATABASE ${dbName}`));
  const u = new URL(PG);
  u.pathname = `/${dbName}`;
  dbUrl = u.toString();
});

afterAll(async () => {
  if (!PG) return;
  for (const r of relays) await r.close();
  for (const s of stores) await s.close();
  await admin((c) => c.query(`DROP DATABASE IF EXISTS ${dbName}`));
});

async function until<T>(check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.skipIf(!PG)('files on PostgreSQL', () => {
  it('stores parts, resumes a dropped request, serves ranges across parts, on two relays', async () => {
    const a = await relayOn();
    const b = await relayOn();
    const v = new Caller(a, 'c1', 'v1');
    const data = randomData(2_600_000);
    const blob = await v.newBlob(data.length);
    // A PATCH of the first 1.5 MiB announced as the whole file, dropped once 1 MiB (one part)
    // is stored.
    const req = request(`${a}/v1/files/${blob}`, {
      method: 'PATCH',
      headers: await v.headers({
        'content-type': 'application/offset+octet-stream',
        'upload-offset': '0',
        'content-length': String(data.length),
      }),
    });
    req.on('error', () => undefined);
    req.write(data.subarray(0, 1_500_000));
    await until(async () => ((await parts(blob)) >= 1 ? true : undefined));
    req.destroy();
    const resumed = await until(async () => {
      const s = UploadState.parse(await (await v.state(blob)).json());
      return s.offset > 0 ? s : undefined;
    });
    expect(resumed.offset).toBeGreaterThanOrEqual(1024 * 1024);
    expect(resumed.offset).toBeLessThanOrEqual(1_500_000);
    // The rest through the other relay: one database, one upload.
    const onB = new Caller(b, 'c1', 'v1');
    const rest = await onB.patch(blob, resumed.offset, data.subarray(resumed.offset));
    expect(rest.status).toBe(200);
    expect(UploadState.parse(await rest.json()).complete).toBe(true);
    const agent = new Caller(b, 'c1', 'a1', 'agent');
    await agent.newBlob(100);
    const url = await agent.linkUrl(blob);
    const whole = Buffer.from(await (await fetch(url)).arrayBuffer());
    expect(Buffer.compare(whole, Buffer.from(data))).toBe(0);
    const from = 1024 * 1024 - 10;
    const part = await fetch(url.replace(b, a), {
      headers: { range: `bytes=${from}-${from + 19}` },
    });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes ${from}-${from + 19}/${data.length}`);
    expect(Buffer.from(await part.arrayBuffer())).toEqual(
      Buffer.from(data.subarray(from, from + 20)),
    );
    await relays[0]?.contacts.kick('c1', 'a1', Date.now());
    expect((await fetch(url)).status).toBe(403);
  });

  it('counts the contact quota in the database and deletes blobs with their parts', async () => {
    const a = await relayOn({ contactQuotaBytes: 10_000, incompleteTtlSeconds: 60 });
    const v = new Caller(a, 'c2', 'v1');
    const done = await v.upload(randomData(6000), 2500);
    const over = await v.create(5000);
    expect(over.status).toBe(429);
    expect(await errorCode(over)).toBe('QUOTA_EXCEEDED');
    const stale = await v.newBlob(4000);
    expect((await v.patch(stale, 0, randomData(100))).status).toBe(200);
    expect(await parts(done)).toBe(3);
    const files = relays[relays.length - 1]?.files;
    // The first test's unfinished upload (same database) goes too.
    expect(await files?.sweep(Date.now() + 61_000)).toBe(2);
    expect(await parts(stale)).toBe(0);
    expect(await parts(done)).toBe(3);
    expect(await files?.deleteContact('c2')).toBe(1);
    expect(await parts(done)).toBe(0);
    expect((await v.state(done)).status).toBe(404);
  });
});
