/**
 * Issue 4 on the relay, over a real socket on 127.0.0.1 and a real SQLite file: EdDSA tokens,
 * wrong-contact and not-yet-valid tokens, the participant limit, close (no sends, history
 * readable), kick (connections end, tokens refused), transfer, expiry with the retention hook,
 * the admin API and its authentication, and the v1 -> v2 store migration.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ContactResponse, ListContactsResponse, type Role } from '@latchkey/protocol';
import {
  adminAuthorization,
  deriveAdminKey,
  generateTokenKeyPair,
  mintToken,
} from '@latchkey/tokens';
import { createRelay, SqliteMessageStore, type Relay, type RelayOptions } from '../src/index.ts';
import { SECRET, TestClient, fakeEnvelope } from './_helpers.ts';

let dir: string;
let store: SqliteMessageStore;
let relay: Relay | undefined;
let url: string;
let http: string;
const clients: TestClient[] = [];
const ADMIN = adminAuthorization(deriveAdminKey(SECRET));

async function start(
  over: Partial<Omit<RelayOptions, 'apiSecret'>> & { apiSecret?: Uint8Array | undefined } = {},
): Promise<Relay> {
  const { apiSecret: given, ...rest } = over;
  const apiSecret = 'apiSecret' in over ? given : SECRET;
  relay = createRelay({ store, ...rest, ...(apiSecret === undefined ? {} : { apiSecret }) });
  ({ url } = await relay.listen({ host: '127.0.0.1', port: 0 }));
  http = url.replace(/^ws/, 'http');
  return relay;
}

async function connect(token: string): Promise<TestClient> {
  const c = await TestClient.open(url);
  clients.push(c);
  c.send({ v: 1, type: 'auth', token });
  return c;
}

async function as(
  contactId: string,
  participantId: string,
  role: Role = 'visitor',
): Promise<TestClient> {
  const c = await connect(
    await mintToken(SECRET, { contactId, participantId, role, ttlSeconds: 600 }),
  );
  await c.next('ready');
  return c;
}

async function refused(
  contactId: string,
  participantId: string,
  role: Role = 'visitor',
): Promise<{ code: string; close: number }> {
  const c = await connect(
    await mintToken(SECRET, { contactId, participantId, role, ttlSeconds: 600 }),
  );
  const err = await c.next('error');
  return { code: err.code, close: (await c.closed).code };
}

async function admin(
  path: string,
  body?: unknown,
  auth = ADMIN,
): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${http}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: {
      authorization: auth,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, json: await res.json() };
}

async function sendOk(c: TestClient, contactId: string, sender: string): Promise<number> {
  c.sendEnvelope(fakeEnvelope(contactId, sender));
  return (await c.next('ack')).seq;
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'latchkey-moderation-'));
  store = new SqliteMessageStore({ path: join(dir, 'messages.db') });
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.ws.terminate();
  await relay?.close();
  relay = undefined;
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

describe('relay: tokens', () => {
  it('accepts EdDSA tokens with only the public key, and refuses HS256 ones then', async () => {
    const pair = generateTokenKeyPair();
    await start({
      apiSecret: undefined,
      tokenPublicKey: pair.publicKey,
      adminKeys: [deriveAdminKey(SECRET)],
    });
    const ok = await connect(
      await mintToken(pair.privateKey, {
        contactId: 'c1',
        participantId: 'v',
        role: 'visitor',
        ttlSeconds: 600,
      }),
    );
    expect(await ok.next('ready')).toMatchObject({ contactId: 'c1', participantId: 'v' });
    const forged = await connect(
      await mintToken(generateTokenKeyPair().privateKey, {
        contactId: 'c1',
        participantId: 'v',
        role: 'visitor',
        ttlSeconds: 600,
      }),
    );
    expect(await forged.next('error')).toMatchObject({ code: 'AUTH_INVALID' });
    const hs = await connect(
      await mintToken(SECRET, {
        contactId: 'c1',
        participantId: 'v',
        role: 'visitor',
        ttlSeconds: 600,
      }),
    );
    expect(await hs.next('error')).toMatchObject({ code: 'AUTH_INVALID' });
    expect((await hs.closed).code).toBe(4401);
  });

  it('refuses a not-yet-valid token, and a token of another contact sending into this one', async () => {
    await start();
    const now = Math.floor(Date.now() / 1000);
    const early = await connect(
      await mintToken(SECRET, {
        contactId: 'c1',
        participantId: 'v',
        role: 'visitor',
        ttlSeconds: 600,
        notBefore: now + 300,
      }),
    );
    expect(await early.next('error')).toMatchObject({ code: 'AUTH_INVALID' });
    const other = await as('c2', 'v');
    other.sendEnvelope(fakeEnvelope('c1', 'v'));
    expect(await other.next('error')).toMatchObject({ code: 'FORBIDDEN' });
    expect(await store.head('c1')).toBe(0);
  });
});

describe('relay: membership and moderation', () => {
  it('holds the participant limit: the 11th distinct participant gets CONTACT_FULL', async () => {
    await start();
    for (let i = 0; i < 10; i++) await as('c1', `p${i}`, i === 0 ? 'visitor' : 'agent');
    expect(await refused('c1', 'p10', 'agent')).toEqual({ code: 'CONTACT_FULL', close: 4409 });
    // known participants come back; other contacts are unaffected
    await as('c1', 'p3', 'agent');
    await as('c2', 'p10', 'agent');
  });

  it('applies a configured limit and refuses a participant changing role', async () => {
    await start({ maxParticipants: 2 });
    await as('c1', 'v');
    await as('c1', 'a', 'agent');
    expect((await refused('c1', 's', 'supervisor')).code).toBe('CONTACT_FULL');
    expect((await refused('c1', 'a', 'supervisor')).code).toBe('FORBIDDEN');
  });

  it('a closed contact refuses sends with CONTACT_CLOSED but serves its history', async () => {
    await start();
    const v = await as('c1', 'v');
    const a = await as('c1', 'a', 'agent');
    await sendOk(v, 'c1', 'v');
    await sendOk(a, 'c1', 'a');
    const r = await admin('/admin/v1/contacts/c1/close', {});
    expect(r.status).toBe(200);
    expect(ContactResponse.parse(r.json).contact).toMatchObject({
      contactId: 'c1',
      state: 'closed',
    });
    v.sendEnvelope(fakeEnvelope('c1', 'v'));
    expect(await v.next('error')).toMatchObject({ code: 'CONTACT_CLOSED' });
    v.send({ v: 1, type: 'history', id: 'h', since: 0 });
    expect((await v.next('history')).envelopes.map((e) => e.seq)).toEqual([1, 2]);
    // a new connection still reads, and still cannot send
    const again = await as('c1', 'a', 'agent');
    again.send({ v: 1, type: 'join', since: 0 });
    expect(await again.next('joined')).toMatchObject({ head: 2 });
    again.sendEnvelope(fakeEnvelope('c1', 'a'));
    expect(await again.next('error')).toMatchObject({ code: 'CONTACT_CLOSED' });
    expect(await store.head('c1')).toBe(2);
  });

  it('kick ends every connection of the participant and refuses its tokens from then on', async () => {
    await start();
    const v = await as('c1', 'v');
    const a1 = await as('c1', 'a', 'agent');
    const a2 = await as('c1', 'a', 'agent');
    const r = await admin('/admin/v1/contacts/c1/kick', { participantId: 'a' });
    expect(r.status).toBe(200);
    const info = ContactResponse.parse(r.json).contact;
    expect(info.participants.find((p) => p.participantId === 'a')).toMatchObject({
      state: 'kicked',
      role: 'agent',
    });
    for (const c of [a1, a2]) {
      expect(await c.next('error')).toMatchObject({ code: 'FORBIDDEN' });
      expect((await c.closed).code).toBe(4403);
    }
    expect(await refused('c1', 'a', 'agent')).toEqual({ code: 'FORBIDDEN', close: 4403 });
    // the others go on; the kicked participant's other contacts are unaffected
    await sendOk(v, 'c1', 'v');
    await as('c2', 'a', 'agent');
    // a participant never seen is refused ahead of its first connection
    await admin('/admin/v1/contacts/c1/kick', { participantId: 'later' });
    expect((await refused('c1', 'later', 'agent')).code).toBe('FORBIDDEN');
  });

  it('transfer: the leaver is cut off and refused, the newcomer reads the whole history', async () => {
    await start();
    const v = await as('c1', 'v');
    const a = await as('c1', 'a', 'agent');
    await sendOk(v, 'c1', 'v');
    await sendOk(a, 'c1', 'a');
    const r = await admin('/admin/v1/contacts/c1/transfer', { from: 'a', to: 'b' });
    expect(r.status).toBe(200);
    const parts = ContactResponse.parse(r.json).contact.participants;
    expect(parts.map((p) => [p.participantId, p.role, p.state])).toEqual([
      ['v', 'visitor', 'active'],
      ['a', 'agent', 'left'],
      ['b', 'agent', 'active'],
    ]);
    expect((await a.closed).code).toBe(4403);
    expect((await refused('c1', 'a', 'agent')).code).toBe('FORBIDDEN');
    const b = await as('c1', 'b', 'agent');
    b.send({ v: 1, type: 'join', since: 0 });
    await b.next('joined');
    expect(b.log.filter((f) => f.type === 'deliver').map((f) => f.envelope.seq)).toEqual([1, 2]);
    expect(await sendOk(b, 'c1', 'b')).toBe(3);
    // only agents hand over
    expect((await admin('/admin/v1/contacts/c1/transfer', { from: 'v', to: 'x' })).status).toBe(
      403,
    );
  });

  it('invite admits a supervisor ahead of time; the limit counts invitees', async () => {
    await start({ maxParticipants: 2 });
    await as('c1', 'v');
    const r = await admin('/admin/v1/contacts/c1/invite', {
      participantId: 's',
      role: 'supervisor',
    });
    expect(r.status).toBe(200);
    expect((await refused('c1', 'a', 'agent')).code).toBe('CONTACT_FULL');
    const s = await as('c1', 's', 'supervisor');
    s.sendEnvelope(fakeEnvelope('c1', 's'));
    expect(await s.next('error')).toMatchObject({ code: 'FORBIDDEN' });
    expect(
      (await admin('/admin/v1/contacts/c1/invite', { participantId: 'x', role: 'agent' })).json,
    ).toMatchObject({
      error: { code: 'CONTACT_FULL' },
    });
  });

  it('expiry ends access: connections close with CONTACT_EXPIRED, retention hears of it once', async () => {
    const expired: string[] = [];
    await start({ retention: { contactExpired: (id) => Promise.resolve(void expired.push(id)) } });
    const v = await as('c1', 'v');
    await sendOk(v, 'c1', 'v');
    const r = await admin('/admin/v1/contacts/c1/expiry', { expiresAt: Date.now() - 1 });
    expect(ContactResponse.parse(r.json).contact.state).toBe('expired');
    expect(await v.next('error')).toMatchObject({ code: 'CONTACT_EXPIRED' });
    expect((await v.closed).code).toBe(4410);
    expect(expired).toEqual(['c1']);
    expect(await refused('c1', 'v')).toEqual({ code: 'CONTACT_EXPIRED', close: 4410 });
    expect(
      (await admin('/admin/v1/contacts/c1/expiry', { expiresAt: Date.now() + 1e6 })).status,
    ).toBe(410);
  });

  it('new contacts expire after the configured lifetime, found by the sweep', async () => {
    await start({ contactTtlMs: 150, expirySweepMs: 50 });
    const v = await as('c1', 'v');
    expect(await v.next('error', 2000)).toMatchObject({ code: 'CONTACT_EXPIRED' });
  });
});

describe('relay: admin API', () => {
  it('lists contacts with state and participants, pages, and filters by state', async () => {
    await start();
    await as('c1', 'v');
    await as('c2', 'v');
    await as('c3', 'v');
    await admin('/admin/v1/contacts/c2/close', {});
    const all = ListContactsResponse.parse((await admin('/admin/v1/contacts')).json);
    expect(all.contacts.map((c) => [c.contactId, c.state, c.participants.length])).toEqual([
      ['c1', 'open', 1],
      ['c2', 'closed', 1],
      ['c3', 'open', 1],
    ]);
    const page = ListContactsResponse.parse((await admin('/admin/v1/contacts?limit=2')).json);
    expect(page.contacts.map((c) => c.contactId)).toEqual(['c1', 'c2']);
    expect(page.next).toBe('c2');
    const rest = ListContactsResponse.parse(
      (await admin(`/admin/v1/contacts?limit=2&after=${page.next}`)).json,
    );
    expect(rest.contacts.map((c) => c.contactId)).toEqual(['c3']);
    expect(rest.next).toBeUndefined();
    const closed = ListContactsResponse.parse(
      (await admin('/admin/v1/contacts?state=closed')).json,
    );
    expect(closed.contacts.map((c) => c.contactId)).toEqual(['c2']);
    expect((await admin('/admin/v1/contacts/c1')).status).toBe(200);
    expect((await admin('/admin/v1/contacts/nope')).status).toBe(404);
  });

  it('refuses a wrong secret, an unknown key id and no key with 401; bad bodies with 400', async () => {
    await start();
    await as('c1', 'v');
    const wrong = adminAuthorization({ id: 'default', secret: new Uint8Array(32).fill(3) });
    expect(await admin('/admin/v1/contacts', undefined, wrong)).toMatchObject({
      status: 401,
      json: { error: { code: 'AUTH_INVALID' } },
    });
    // the API secret itself is not the admin key
    const raw = adminAuthorization({ id: 'default', secret: SECRET });
    expect((await admin('/admin/v1/contacts/c1/close', {}, raw)).status).toBe(401);
    expect(
      (
        await admin(
          '/admin/v1/contacts',
          undefined,
          adminAuthorization({ id: 'x', secret: deriveAdminKey(SECRET).secret }),
        )
      ).status,
    ).toBe(401);
    const none = await fetch(`${http}/admin/v1/contacts`);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toContain('Bearer');
    expect(
      (await admin('/admin/v1/contacts/c1/kick', { participantId: 'a', extra: 1 })).status,
    ).toBe(400);
    expect((await admin('/admin/v1/contacts/c1/kick', { participantId: 'has space' })).status).toBe(
      400,
    );
    expect((await admin('/admin/v1/contacts/c1/unknown', {})).status).toBe(404);
    expect((await store.contact('c1', Date.now()))?.state).toBe('open');
    // other paths keep answering 426
    expect((await fetch(`${http}/`)).status).toBe(426);
  });

  it('answers only addresses on its allowlist (loopback by default), whatever the key', async () => {
    await start({ adminIpAllowlist: ['10.0.0.0/8'] });
    const r = await admin('/admin/v1/contacts');
    expect(r.status).toBe(403);
    expect(r.json).toEqual({
      error: { code: 'FORBIDDEN', message: 'admin API not allowed from this address' },
    });
    await relay?.close();
    await start({ adminIpAllowlist: ['127.0.0.1'] });
    expect((await admin('/admin/v1/contacts')).status).toBe(200);
  });

  it('is absent (404 -> 426) when the relay has no admin key', async () => {
    const pair = generateTokenKeyPair();
    await start({ apiSecret: undefined, tokenPublicKey: pair.publicKey });
    expect(
      (await fetch(`${http}/admin/v1/contacts`, { headers: { authorization: ADMIN } })).status,
    ).toBe(426);
  });
});

describe('relay store: migration', () => {
  it('brings a v1 database to v2 and keeps its messages', async () => {
    await store.close();
    const path = join(dir, 'v1.db');
    const db = new Database(path);
    db.exec(`CREATE TABLE contacts (contact_id TEXT PRIMARY KEY, head_seq INTEGER NOT NULL CHECK (head_seq >= 0), created_at INTEGER NOT NULL) STRICT, WITHOUT ROWID;
      CREATE TABLE messages (contact_id TEXT NOT NULL REFERENCES contacts (contact_id), seq INTEGER NOT NULL CHECK (seq >= 1), msg_id TEXT NOT NULL, sender_id TEXT NOT NULL, epoch INTEGER NOT NULL, sent_at INTEGER NOT NULL, stored_at INTEGER NOT NULL, envelope TEXT NOT NULL, PRIMARY KEY (contact_id, seq), UNIQUE (contact_id, msg_id)) STRICT, WITHOUT ROWID;
      PRAGMA user_version = 1;`);
    const created = Date.now();
    db.prepare('INSERT INTO contacts VALUES (?, 0, ?)').run('old', created);
    db.close();
    store = new SqliteMessageStore({ path });
    const info = await store.contact('old', Date.now());
    expect(info).toMatchObject({
      contactId: 'old',
      state: 'open',
      expiresAt: created + 30 * 24 * 3600 * 1000,
      participants: [],
    });
    expect((await store.appendBatch([fakeEnvelope('old', 'v')]))[0]).toMatchObject({
      ok: true,
      seq: 1,
    });
  });
});
