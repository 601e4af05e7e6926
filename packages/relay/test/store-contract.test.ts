/**
 * The MessageStore + ContactStore contract, run against every backend: SQLite (always) and
 * PostgreSQL (throwaway server, or LATCHKEY_TEST_PG_URL; skipped with a reason when neither is
 * available, failing under CI=true). PostgreSQL also gets the multi-writer case: several pools
 * (as several relays) appending to one contact at once keep seqs gap-free and ordered.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { LatchkeyError, PROTOCOL_VERSION, ServerFrame } from '@latchkey/protocol';
import { deliverText } from '../src/envelope-json.ts';
import type { ContactStore } from '../src/contacts.ts';
import { PG_SCHEMA_VERSION, PgMessageStore } from '../src/pg-store.ts';
import { SqliteMessageStore, type MessageStore } from '../src/store.ts';
import { fakeEnvelope } from './_helpers.ts';
import { testServices } from './_services.ts';

type Store = MessageStore & ContactStore;
/** Opens a store over a fresh database; `reopen` opens the same database again. */
type Factory = () => Promise<{
  store: Store;
  reopen: () => Promise<Store>;
  done: () => Promise<void>;
}>;

const POLICY = { maxParticipants: 3, contactTtlMs: 60_000 };
const T0 = Date.now();

function contract(name: string, open: Factory): void {
  describe(`store contract: ${name}`, () => {
    it('assigns gap-free seqs per contact, starting at 1, in submission order', async () => {
      const { store, done } = await open();
      const r = await store.appendBatch([
        fakeEnvelope('c1', 'a'),
        fakeEnvelope('c2', 'x'),
        fakeEnvelope('c1', 'b'),
        fakeEnvelope('c1', 'a'),
        fakeEnvelope('c2', 'x'),
      ]);
      expect(r.map((x) => (x.ok ? x.seq : -1))).toEqual([1, 1, 2, 3, 2]);
      const more = await store.appendBatch([fakeEnvelope('c1', 'b')]);
      expect(more[0]).toMatchObject({ ok: true, seq: 4, duplicate: false });
      expect(await store.head('c1')).toBe(4);
      expect(await store.head('c2')).toBe(2);
      expect(await store.head('nobody')).toBe(0);
      expect(store.stats).toEqual({ transactions: 2, appended: 6 });
      expect(await store.appendBatch([])).toEqual([]);
      await done();
    });

    it('returns the stored JSON, from which the relay builds the deliver frame unparsed', async () => {
      const { store, done } = await open();
      const e = fakeEnvelope('c1', 'a');
      await store.appendBatch([fakeEnvelope('c1', 'b')]);
      const [fresh] = await store.appendBatch([e]);
      const [dup] = await store.appendBatch([e]);
      for (const r of [fresh, dup]) {
        if (!r?.ok || r.json === undefined) throw new Error('no stored JSON in the result');
        const frame = ServerFrame.parse(JSON.parse(deliverText(r.json, r.seq)));
        expect(frame).toEqual({ v: PROTOCOL_VERSION, type: 'deliver', envelope: { ...e, seq: 2 } });
      }
      await done();
    });

    it('returns the original seq for a duplicate and CONFLICT for a reused msgId', async () => {
      const { store, done } = await open();
      const e = fakeEnvelope('c1', 'a');
      await store.appendBatch([fakeEnvelope('c1', 'b'), e]);
      const [dup] = await store.appendBatch([
        { ...e, cert: { sig: e.cert.sig, body: e.cert.body } },
      ]);
      expect(dup).toMatchObject({ ok: true, seq: 2, duplicate: true, envelope: { ...e, seq: 2 } });
      expect((await store.appendBatch([{ ...e, senderId: 'b' }]))[0]).toEqual({
        ok: false,
        code: 'CONFLICT',
      });
      expect(
        (await store.appendBatch([{ ...e, nonce: fakeEnvelope('c1', 'a').nonce }]))[0],
      ).toEqual({ ok: false, code: 'CONFLICT' });
      expect((await store.appendBatch([{ ...e, contactId: 'c2' }]))[0]).toMatchObject({
        ok: true,
        seq: 1,
        duplicate: false,
      });
      const f = fakeEnvelope('c1', 'a');
      expect(await store.appendBatch([f, f, { ...f, senderId: 'z' }])).toMatchObject([
        { ok: true, seq: 3, duplicate: false },
        { ok: true, seq: 3, duplicate: true },
        { ok: false, code: 'CONFLICT' },
      ]);
      expect(await store.head('c1')).toBe(3);
      await done();
    });

    it('refuses QUOTA_EXCEEDED in the append transaction: nothing stored, counts per contact and sender, duplicates answered', async () => {
      const { store, reopen, done } = await open();
      const quota = {
        contactMessages: 5,
        contactBytes: 1e9,
        participantMessages: 3,
        participantBytes: 1e9,
      };
      const a = [1, 2, 3, 4].map(() => fakeEnvelope('q1', 'a'));
      const r = await store.appendBatch(a, quota);
      expect(r.map((x) => (x.ok ? x.seq : x.code))).toEqual([1, 2, 3, 'QUOTA_EXCEEDED']);
      // A retry of a stored msgId is still answered with its seq, over quota or not.
      expect((await store.appendBatch([a[0]!], quota))[0]).toMatchObject({
        ok: true,
        seq: 1,
        duplicate: true,
      });
      const b = [1, 2, 3].map(() => fakeEnvelope('q1', 'b'));
      expect((await store.appendBatch(b, quota)).map((x) => (x.ok ? x.seq : x.code))).toEqual([
        4,
        5,
        'QUOTA_EXCEEDED',
      ]);
      const page = await store.history('q1', 0, 100);
      expect(page.head).toBe(5);
      expect(page.envelopes.map((e) => e.msgId)).toEqual(
        [a[0], a[1], a[2], b[0], b[1]].map((e) => e!.msgId),
      );
      // Bytes: each fake envelope has the same size; two fit, the third does not.
      const size = Buffer.byteLength(JSON.stringify(fakeEnvelope('q2', 'v')));
      const byBytes = {
        contactMessages: 100,
        contactBytes: 1e9,
        participantMessages: 100,
        participantBytes: 2 * size + size / 2,
      };
      const v = [1, 2, 3].map(() => fakeEnvelope('q2', 'v'));
      expect((await store.appendBatch(v, byBytes)).map((x) => (x.ok ? x.seq : x.code))).toEqual([
        1,
        2,
        'QUOTA_EXCEEDED',
      ]);
      // Without a quota nothing is refused; the counts carry over a reopen.
      expect((await store.appendBatch([fakeEnvelope('q1', 'c')]))[0]).toMatchObject({
        ok: true,
        seq: 6,
      });
      const again = await reopen();
      expect(
        (await again.appendBatch([fakeEnvelope('q1', 'd')], { ...quota, contactMessages: 7 }))[0],
      ).toMatchObject({ ok: true, seq: 7 });
      expect(
        (await again.appendBatch([fakeEnvelope('q1', 'd')], { ...quota, contactMessages: 7 }))[0],
      ).toEqual({ ok: false, code: 'QUOTA_EXCEEDED' });
      expect((await again.appendBatch([fakeEnvelope('q2', 'v')], byBytes))[0]).toEqual({
        ok: false,
        code: 'QUOTA_EXCEEDED',
      });
      expect(await again.head('q2')).toBe(2);
      await done();
    });

    it('pages history after a cursor, in order, with head and more', async () => {
      const { store, done } = await open();
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
      await done();
    });

    it('keeps data across close and reopen; a closed store says UNAVAILABLE', async () => {
      const { store, reopen, done } = await open();
      const e = fakeEnvelope('c1', 'a');
      await store.appendBatch([e, fakeEnvelope('c1', 'b')]);
      await store.close();
      await expect(store.head('c1')).rejects.toSatisfy((err) =>
        LatchkeyError.is(err, 'UNAVAILABLE'),
      );
      const s2 = await reopen();
      expect(await s2.head('c1')).toBe(2);
      expect((await s2.history('c1', 0, 10)).envelopes[0]).toEqual({ ...e, seq: 1 });
      expect((await s2.appendBatch([e]))[0]).toMatchObject({ ok: true, seq: 1, duplicate: true });
      expect((await s2.appendBatch([fakeEnvelope('c1', 'a')]))[0]).toMatchObject({ seq: 3 });
      await s2.close();
      await done();
    });

    it('admits, limits, kicks, transfers, closes and expires contacts', async () => {
      const { store, done } = await open();
      const info = await store.admit(
        { contactId: 'k1', participantId: 'v', role: 'visitor' },
        T0,
        POLICY,
      );
      expect(info).toMatchObject({
        contactId: 'k1',
        state: 'open',
        createdAt: T0,
        expiresAt: T0 + 60_000,
      });
      expect(info.participants).toEqual([
        { participantId: 'v', role: 'visitor', state: 'active', joinedAt: T0, leftAt: null },
      ]);
      // idempotent for the same role, refused for another
      await store.admit({ contactId: 'k1', participantId: 'v', role: 'visitor' }, T0 + 1, POLICY);
      await expect(
        store.admit({ contactId: 'k1', participantId: 'v', role: 'agent' }, T0, POLICY),
      ).rejects.toSatisfy((e) => LatchkeyError.is(e, 'FORBIDDEN'));
      await store.invite('k1', 'a1', 'agent', T0 + 2, POLICY);
      await store.admit(
        { contactId: 'k1', participantId: 's', role: 'supervisor' },
        T0 + 3,
        POLICY,
      );
      await expect(
        store.admit({ contactId: 'k1', participantId: 'x', role: 'visitor' }, T0, POLICY),
      ).rejects.toSatisfy((e) => LatchkeyError.is(e, 'CONTACT_FULL'));
      // kick: refused from then on, and its sends are FORBIDDEN
      const kicked = await store.kick('k1', 's', T0 + 4);
      expect(kicked.participants.find((p) => p.participantId === 's')).toMatchObject({
        state: 'kicked',
        leftAt: T0 + 4,
      });
      await expect(
        store.admit({ contactId: 'k1', participantId: 's', role: 'supervisor' }, T0, POLICY),
      ).rejects.toSatisfy((e) => LatchkeyError.is(e, 'FORBIDDEN'));
      expect((await store.appendBatch([fakeEnvelope('k1', 's')]))[0]).toEqual({
        ok: false,
        code: 'FORBIDDEN',
      });
      // a kick of someone never seen records a deny entry (role null)
      const deny = await store.kick('k2', 'ghost', T0);
      expect(deny.participants).toEqual([
        { participantId: 'ghost', role: null, state: 'kicked', joinedAt: T0, leftAt: T0 },
      ]);
      // transfer: from leaves, to becomes an agent
      const t = await store.transfer('k1', 'a1', 'a2', T0 + 5);
      expect(t.participants.map((p) => [p.participantId, p.state])).toEqual([
        ['v', 'active'],
        ['a1', 'left'],
        ['s', 'kicked'],
        ['a2', 'active'],
      ]);
      await expect(store.transfer('k1', 'v', 'a3', T0 + 6)).rejects.toSatisfy((e) =>
        LatchkeyError.is(e, 'FORBIDDEN'),
      );
      // close: no more sends, history readable, idempotent
      expect((await store.appendBatch([fakeEnvelope('k1', 'v')]))[0]).toMatchObject({
        ok: true,
        seq: 1,
      });
      const closed = await store.closeContact('k1', T0 + 7);
      expect(closed).toMatchObject({ state: 'closed', closedAt: T0 + 7 });
      expect((await store.closeContact('k1', T0 + 8)).closedAt).toBe(T0 + 7);
      expect((await store.appendBatch([fakeEnvelope('k1', 'v')]))[0]).toEqual({
        ok: false,
        code: 'CONTACT_CLOSED',
      });
      expect((await store.history('k1', 0, 10)).envelopes).toHaveLength(1);
      await expect(store.closeContact('nope', T0)).rejects.toSatisfy((e) =>
        LatchkeyError.is(e, 'NOT_FOUND'),
      );
      await expect(store.setExpiry('nope', T0, T0)).rejects.toSatisfy((e) =>
        LatchkeyError.is(e, 'NOT_FOUND'),
      );
      expect(await store.contact('nope', T0)).toBeNull();
      // expiry
      await store.admit({ contactId: 'k3', participantId: 'v', role: 'visitor' }, T0, POLICY);
      expect((await store.setExpiry('k3', T0 + 10, T0)).expiresAt).toBe(T0 + 10);
      expect((await store.contact('k3', T0 + 10))?.state).toBe('expired');
      expect((await store.appendBatch([fakeEnvelope('k2', 'v')]))[0]).toMatchObject({ ok: true });
      expect(await store.expireDue(T0 + 10)).toEqual(['k3']);
      expect(await store.expireDue(T0 + 10)).toEqual([]);
      await expect(
        store.admit({ contactId: 'k3', participantId: 'v', role: 'visitor' }, T0, POLICY),
      ).rejects.toSatisfy((e) => LatchkeyError.is(e, 'CONTACT_EXPIRED'));
      await expect(store.kick('k3', 'v', T0)).rejects.toSatisfy((e) =>
        LatchkeyError.is(e, 'CONTACT_EXPIRED'),
      );
      // listing by state and page
      const all = await store.listContacts({ limit: 10 }, T0 + 10);
      expect(all.map((c) => c.contactId)).toEqual(['k1', 'k2', 'k3']);
      expect(
        (await store.listContacts({ limit: 10, state: 'closed' }, T0 + 10)).map((c) => c.contactId),
      ).toEqual(['k1']);
      expect(
        (await store.listContacts({ limit: 10, state: 'expired' }, T0 + 10)).map(
          (c) => c.contactId,
        ),
      ).toEqual(['k3']);
      expect(
        (await store.listContacts({ limit: 1, after: 'k1' }, T0 + 10)).map((c) => c.contactId),
      ).toEqual(['k2']);
      await done();
    });
  });
}

contract('SQLite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'latchkey-contract-'));
  const path = join(dir, 'messages.db');
  const opened: Store[] = [];
  const mk = (): Promise<Store> => {
    const s = new SqliteMessageStore({ path });
    opened.push(s);
    return Promise.resolve(s);
  };
  return {
    store: await mk(),
    reopen: mk,
    async done() {
      for (const s of opened) await s.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

const services = await testServices('PostgreSQL store contract');
afterAll(() => services?.stop());

if (services) {
  contract('PostgreSQL', async () => {
    const url = await services.newDatabase();
    const opened: Store[] = [];
    const mk = async (): Promise<Store> => {
      const s = await PgMessageStore.open({ url });
      opened.push(s);
      return s;
    };
    return {
      store: await mk(),
      reopen: mk,
      async done() {
        for (const s of opened) await s.close();
      },
    };
  });

  describe('PgMessageStore', () => {
    it('migrates once at open (schema_version) and refuses a newer schema', async () => {
      const url = await services.newDatabase();
      // relays starting together: one migrates, the others wait and find it done
      const stores = await Promise.all([1, 2, 3].map(() => PgMessageStore.open({ url })));
      const db = new pg.Client({ connectionString: url });
      await db.connect();
      expect((await db.query('SELECT version FROM schema_version')).rows).toEqual([
        { version: PG_SCHEMA_VERSION },
      ]);
      await db.query('UPDATE schema_version SET version = 99');
      await db.end();
      await expect(PgMessageStore.open({ url })).rejects.toSatisfy((e) =>
        LatchkeyError.is(e, 'UNAVAILABLE'),
      );
      for (const s of stores) await s.close();
    });

    it('keeps seqs gap-free and ordered when several relays append to one contact at once', async () => {
      const url = await services.newDatabase();
      const relays = await Promise.all(
        [1, 2, 3, 4].map(() => PgMessageStore.open({ url, maxConnections: 4 })),
      );
      const acked: { seq: number; msgId: string }[] = [];
      await Promise.all(
        relays.map(async (s, i) => {
          for (let round = 0; round < 15; round++) {
            const batch = [
              fakeEnvelope('hot', `r${i}`),
              fakeEnvelope('hot', `r${i}`),
              fakeEnvelope(`cold${i}`, 'x'),
              fakeEnvelope('hot2', 'y'),
            ];
            const r = await s.appendBatch(batch);
            r.forEach((x, j) => {
              if (!x.ok) throw new Error(x.code);
              if (batch[j]?.contactId === 'hot')
                acked.push({ seq: x.seq, msgId: x.envelope.msgId });
            });
          }
        }),
      );
      const page = await relays[0]!.history('hot', 0, 1000);
      expect(page.envelopes.map((e) => e.seq)).toEqual(
        Array.from({ length: 120 }, (_, i) => i + 1),
      );
      const bySeq = new Map(page.envelopes.map((e) => [e.seq, e.msgId]));
      for (const a of acked) expect(bySeq.get(a.seq)).toBe(a.msgId);
      expect(await relays[1]!.head('hot2')).toBe(60);
      for (const s of relays) await s.close();
    });

    it('keeps one quota across several relays appending to one contact at once', async () => {
      const url = await services.newDatabase();
      const relays = await Promise.all(
        [1, 2, 3, 4].map(() => PgMessageStore.open({ url, maxConnections: 4 })),
      );
      const quota = {
        contactMessages: 25,
        contactBytes: 1e9,
        participantMessages: 8,
        participantBytes: 1e9,
      };
      const outcomes: string[] = [];
      await Promise.all(
        relays.map(async (s, i) => {
          for (let round = 0; round < 6; round++) {
            const r = await s.appendBatch(
              [fakeEnvelope('hot', `r${i}`), fakeEnvelope('hot', `s${i}`)],
              quota,
            );
            for (const x of r) outcomes.push(x.ok ? 'ok' : x.code);
          }
        }),
      );
      // 8 senders x 6 tries, at most 8 each (48 >= 25): exactly the contact's 25 are stored.
      expect(outcomes.filter((o) => o === 'ok')).toHaveLength(25);
      expect(outcomes.filter((o) => o !== 'ok').every((o) => o === 'QUOTA_EXCEEDED')).toBe(true);
      expect(await relays[0]!.head('hot')).toBe(25);
      for (const s of relays) await s.close();
    });

    it('stores nothing of a batch whose transaction fails, and says UNAVAILABLE without values', async () => {
      const url = await services.newDatabase();
      const store = await PgMessageStore.open({ url });
      await store.appendBatch([fakeEnvelope('c1', 'a')]);
      const poison = fakeEnvelope('c1', 'a');
      const db = new pg.Client({ connectionString: url });
      await db.connect();
      await db.query(`CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN
          IF NEW.msg_id = '${poison.msgId}' THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql`);
      await db.query(
        'CREATE TRIGGER poison BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION poison()',
      );
      await db.end();
      const err = await store
        .appendBatch([fakeEnvelope('c1', 'a'), fakeEnvelope('c2', 'b'), poison])
        .then(
          () => null,
          (e: unknown) => e,
        );
      expect(LatchkeyError.is(err, 'UNAVAILABLE')).toBe(true);
      expect((err as LatchkeyError).message).not.toContain('injected');
      expect(String((err as LatchkeyError).detail)).not.toContain('injected');
      expect(await store.head('c1')).toBe(1);
      expect(await store.head('c2')).toBe(0);
      expect(store.stats.transactions).toBe(1);
      expect(await store.ping()).toBe(true);
      await store.close();
      expect(await store.ping()).toBe(false);
    });
  });
}
