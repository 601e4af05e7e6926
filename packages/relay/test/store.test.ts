import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LatchkeyError } from '@latchkey/protocol';
import { fakeEnvelope } from '../test/_helpers.ts';
import { STORE_SCHEMA_VERSION, SqliteMessageStore } from '../src/store.ts';

let dir: string;
let path: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'latchkey-store-'));
  path = join(dir, 'messages.db');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('SqliteMessageStore', () => {
  it('opens in WAL mode, synchronous=NORMAL by default (FULL on request), at the current schema version', async () => {
    const store = new SqliteMessageStore({ path });
    expect(store.durability).toEqual({ journalMode: 'wal', synchronous: 'NORMAL' });
    await store.close();
    const full = new SqliteMessageStore({ path, synchronous: 'FULL' });
    expect(full.durability.synchronous).toBe('FULL');
    await full.close();
    const db = new Database(path, { readonly: true });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('user_version', { simple: true })).toBe(STORE_SCHEMA_VERSION);
    db.close();
  });

  it('assigns gap-free seqs per contact, starting at 1, in submission order', async () => {
    const store = new SqliteMessageStore({ path });
    const batch = [
      fakeEnvelope('c1', 'a'),
      fakeEnvelope('c2', 'x'),
      fakeEnvelope('c1', 'b'),
      fakeEnvelope('c1', 'a'),
      fakeEnvelope('c2', 'x'),
    ];
    const r = await store.appendBatch(batch);
    expect(r.map((x) => (x.ok ? x.seq : -1))).toEqual([1, 1, 2, 3, 2]);
    const more = await store.appendBatch([fakeEnvelope('c1', 'b')]);
    expect(more[0]).toMatchObject({ ok: true, seq: 4, duplicate: false });
    expect(await store.head('c1')).toBe(4);
    expect(await store.head('c2')).toBe(2);
    expect(await store.head('nobody')).toBe(0);
    expect(store.stats).toEqual({ transactions: 2, appended: 6 });
    await store.close();
  });

  it('returns the original seq for a duplicate and CONFLICT for a reused msgId', async () => {
    const store = new SqliteMessageStore({ path });
    const e = fakeEnvelope('c1', 'a');
    await store.appendBatch([fakeEnvelope('c1', 'b'), e]);
    // same envelope, keys in another order: still the same message
    const reordered = { ...e, cert: { sig: e.cert.sig, body: e.cert.body } };
    const [dup] = await store.appendBatch([reordered]);
    expect(dup).toMatchObject({ ok: true, seq: 2, duplicate: true });
    const [otherSender] = await store.appendBatch([{ ...e, senderId: 'b' }]);
    expect(otherSender).toEqual({ ok: false, code: 'CONFLICT' });
    const [otherContent] = await store.appendBatch([
      { ...e, nonce: fakeEnvelope('c1', 'a').nonce },
    ]);
    expect(otherContent).toEqual({ ok: false, code: 'CONFLICT' });
    // the same msgId in another contact is another message
    const [elsewhere] = await store.appendBatch([{ ...e, contactId: 'c2' }]);
    expect(elsewhere).toMatchObject({ ok: true, seq: 1, duplicate: false });
    // a duplicate within one batch
    const f = fakeEnvelope('c1', 'a');
    const twice = await store.appendBatch([f, f]);
    expect(twice).toMatchObject([
      { ok: true, seq: 3, duplicate: false },
      { ok: true, seq: 3, duplicate: true },
    ]);
    expect(await store.head('c1')).toBe(3);
    await store.close();
  });

  it('pages history after a cursor, in order, with head and more', async () => {
    const store = new SqliteMessageStore({ path });
    const sent = Array.from({ length: 7 }, () => fakeEnvelope('c1', 'a'));
    await store.appendBatch(sent);
    const p1 = await store.history('c1', 0, 3);
    expect(p1.envelopes.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(p1).toMatchObject({ head: 7, more: true });
    expect(p1.envelopes[0]).toEqual({ ...sent[0], seq: 1 });
    const p2 = await store.history('c1', 3, 4);
    expect(p2.envelopes.map((e) => e.seq)).toEqual([4, 5, 6, 7]);
    expect(p2.more).toBe(false);
    expect(await store.history('c1', 7, 10)).toEqual({ envelopes: [], head: 7, more: false });
    expect(await store.history('c9', 0, 10)).toEqual({ envelopes: [], head: 0, more: false });
    await expect(store.history('c1', -1, 10)).rejects.toThrow(RangeError);
    await store.close();
  });

  it('keeps data across close and reopen', async () => {
    const s1 = new SqliteMessageStore({ path });
    const e = fakeEnvelope('c1', 'a');
    await s1.appendBatch([e, fakeEnvelope('c1', 'b')]);
    await s1.close();
    await expect(s1.head('c1')).rejects.toSatisfy((err) => LatchkeyError.is(err, 'UNAVAILABLE'));
    const s2 = new SqliteMessageStore({ path });
    expect(await s2.head('c1')).toBe(2);
    expect((await s2.history('c1', 0, 10)).envelopes[0]).toEqual({ ...e, seq: 1 });
    const [dup] = await s2.appendBatch([e]);
    expect(dup).toMatchObject({ ok: true, seq: 1, duplicate: true });
    const [next] = await s2.appendBatch([fakeEnvelope('c1', 'a')]);
    expect(next).toMatchObject({ seq: 3 });
    await s2.close();
  });

  it('stores nothing of a batch whose transaction fails, and says UNAVAILABLE', async () => {
    const store = new SqliteMessageStore({ path });
    await store.appendBatch([fakeEnvelope('c1', 'a')]);
    const poison = fakeEnvelope('c1', 'a');
    const side = new Database(path);
    side.exec(
      `CREATE TRIGGER poison BEFORE INSERT ON messages WHEN NEW.msg_id = '${poison.msgId}'
       BEGIN SELECT RAISE(ABORT, 'injected failure'); END`,
    );
    side.close();
    const err = await store
      .appendBatch([fakeEnvelope('c1', 'a'), fakeEnvelope('c2', 'b'), poison])
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(LatchkeyError.is(err, 'UNAVAILABLE')).toBe(true);
    expect((err as LatchkeyError).message).not.toContain('injected');
    expect(await store.head('c1')).toBe(1);
    expect(await store.head('c2')).toBe(0);
    expect((await store.history('c1', 0, 10)).envelopes).toHaveLength(1);
    expect(store.stats.transactions).toBe(1);
    await store.close();
  });

  it('refuses a database written by a newer schema', async () => {
    const db = new Database(path);
    db.pragma('user_version = 99');
    db.close();
    expect(() => new SqliteMessageStore({ path })).toThrow(LatchkeyError);
  });
});
