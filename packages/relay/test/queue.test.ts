/**
 * The agent queue on the relay's admin API (queue-api.ts, queue-store.ts), over a real socket on
 * 127.0.0.1 and real SQLite files: 20 concurrent claims of one contact (exactly one 200), a claim
 * from a second store on the same file, capacity and availability, release and transfer (the
 * membership follows: the released or transferred agent's connection ends), unknown contacts and
 * typed errors for bad input.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  AgentContactsResponse,
  AgentResponse,
  ContactResponse,
  QUEUE_PATHS,
  QueueEntryResponse,
  QueueResponse,
  type Role,
} from '@latchkey/protocol';
import { adminAuthorization, deriveAdminKey, mintToken } from '@latchkey/tokens';
import { createRelay, SqliteMessageStore, type Relay } from '../src/index.ts';
import { SqliteQueueStore } from '../src/queue-store.ts';
import { SECRET, TestClient } from './_helpers.ts';

let dir: string;
let store: SqliteMessageStore;
let relay: Relay;
let url: string;
let http: string;
const clients: TestClient[] = [];
const ADMIN = adminAuthorization(deriveAdminKey(SECRET));

async function call(
  method: string,
  path: string,
  body?: unknown,
  auth: string | null = ADMIN,
): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${http}${path}`, {
    method,
    headers: {
      ...(auth === null ? {} : { authorization: auth }),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, json: await res.json() };
}
const post = (path: string, body: unknown = {}) => call('POST', path, body);
const code = (r: { json: unknown }): unknown =>
  (r.json as { error?: { code: string } }).error?.code;

async function as(contactId: string, participantId: string, role: Role): Promise<TestClient> {
  const c = await TestClient.open(url);
  clients.push(c);
  c.send({
    v: 1,
    type: 'auth',
    token: await mintToken(SECRET, { contactId, participantId, role, ttlSeconds: 600 }),
  });
  await c.next('ready');
  return c;
}

async function enqueue(contactId: string): Promise<void> {
  const r = await post(QUEUE_PATHS.queue, { contactId });
  expect(r.status).toBe(200);
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'latchkey-queue-'));
  store = new SqliteMessageStore({ path: join(dir, 'messages.db') });
  relay = createRelay({ store, apiSecret: SECRET });
  ({ url } = await relay.listen({ host: '127.0.0.1', port: 0 }));
  http = url.replace(/^ws/, 'http');
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.ws.terminate();
  await relay.close();
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

describe('queue: waiting and claiming', () => {
  it('lists waiting contacts oldest first; of 20 concurrent claims exactly one wins', async () => {
    await enqueue('c-old');
    await enqueue('c-new');
    await enqueue('c-old'); // idempotent: keeps its place
    let q = QueueResponse.parse((await call('GET', QUEUE_PATHS.queue)).json);
    expect(q.waiting.map((e) => e.contactId)).toEqual(['c-old', 'c-new']);

    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => post(QUEUE_PATHS.claim('c-old'), { agentId: `a${i}` })),
    );
    const won = results.filter((r) => r.status === 200);
    expect(won).toHaveLength(1);
    expect(results.filter((r) => r.status === 409).map(code)).toEqual(
      Array.from({ length: 19 }, () => 'CONFLICT'),
    );
    const winner = QueueEntryResponse.parse(won[0]?.json).entry.agentId;
    expect(winner).toMatch(/^a\d+$/);

    q = QueueResponse.parse((await call('GET', QUEUE_PATHS.queue)).json);
    expect(q.waiting.map((e) => e.contactId)).toEqual(['c-new']);
    // A closed contact leaves the queue.
    await enqueue('c-closed');
    expect(
      (await post('/admin/v1/contacts/c-closed/invite', { participantId: 's', role: 'supervisor' }))
        .status,
    ).toBe(200);
    expect((await post('/admin/v1/contacts/c-closed/close')).status).toBe(200);
    q = QueueResponse.parse((await call('GET', QUEUE_PATHS.queue)).json);
    expect(q.waiting.map((e) => e.contactId)).toEqual(['c-new']);
    const gone = await post(QUEUE_PATHS.claim('c-closed'), { agentId: 'a0' });
    expect([gone.status, code(gone)]).toEqual([404, 'NOT_FOUND']);
    // The winner is now an agent of the contact on the relay.
    const info = ContactResponse.parse((await call('GET', `/admin/v1/contacts/c-old`)).json);
    expect(info.contact.participants).toEqual([
      expect.objectContaining({ participantId: winner, role: 'agent', state: 'active' }),
    ]);
    const mine = AgentContactsResponse.parse(
      (await call('GET', QUEUE_PATHS.agentContacts(winner ?? ''))).json,
    );
    expect(mine.contacts.map((e) => e.contactId)).toEqual(['c-old']);
    expect(mine.agent).toMatchObject({ availability: 'available', active: 1 });
  });

  it('a claim through a second store on the same file sees the first one (one winner)', () => {
    const path = join(dir, 'queue.db');
    const a = new SqliteQueueStore({ path });
    const b = new SqliteQueueStore({ path });
    try {
      a.enqueue('c1', 1);
      expect(a.claim('c1', 'x', 2).agentId).toBe('x');
      expect(() => b.claim('c1', 'y', 3)).toThrow(expect.objectContaining({ code: 'CONFLICT' }));
      expect(b.entry('c1')).toMatchObject({ agentId: 'x', claimedAt: 2 });
    } finally {
      a.close();
      b.close();
    }
  });

  it('refuses a claim over capacity (QUOTA_EXCEEDED) or while away (FORBIDDEN)', async () => {
    for (const c of ['c1', 'c2', 'c3']) await enqueue(c);
    const set = await call('PUT', QUEUE_PATHS.agent('ann'), { capacity: 1 });
    expect(AgentResponse.parse(set.json).agent).toEqual({
      agentId: 'ann',
      availability: 'available',
      capacity: 1,
      active: 0,
    });
    expect((await post(QUEUE_PATHS.claim('c1'), { agentId: 'ann' })).status).toBe(200);
    const full = await post(QUEUE_PATHS.claim('c2'), { agentId: 'ann' });
    expect([full.status, code(full)]).toEqual([429, 'QUOTA_EXCEEDED']);

    await call('PUT', QUEUE_PATHS.agent('bob'), { availability: 'away' });
    const away = await post(QUEUE_PATHS.claim('c2'), { agentId: 'bob' });
    expect([away.status, code(away)]).toEqual([403, 'FORBIDDEN']);
    await call('PUT', QUEUE_PATHS.agent('bob'), { availability: 'available' });
    expect((await post(QUEUE_PATHS.claim('c2'), { agentId: 'bob' })).status).toBe(200);
    // Nothing was taken by the refused claims.
    const q = QueueResponse.parse((await call('GET', QUEUE_PATHS.queue)).json);
    expect(q.waiting.map((e) => e.contactId)).toEqual(['c3']);
  });
});

describe('queue: release and transfer', () => {
  it('release puts the contact back and removes the agent (connection ends, no re-claim)', async () => {
    await enqueue('c1');
    expect((await post(QUEUE_PATHS.claim('c1'), { agentId: 'ann' })).status).toBe(200);
    const conn = await as('c1', 'ann', 'agent');
    const wrong = await post(QUEUE_PATHS.release('c1'), { agentId: 'bob' });
    expect([wrong.status, code(wrong)]).toEqual([409, 'CONFLICT']);

    const r = await post(QUEUE_PATHS.release('c1'), { agentId: 'ann' });
    expect(QueueEntryResponse.parse(r.json).entry).toMatchObject({
      agentId: null,
      claimedAt: null,
    });
    expect((await conn.closed).code).toBe(4403);
    const q = QueueResponse.parse((await call('GET', QUEUE_PATHS.queue)).json);
    expect(q.waiting.map((e) => e.contactId)).toEqual(['c1']);
    // The released agent may not take it again; the refused claim leaves it waiting.
    const again = await post(QUEUE_PATHS.claim('c1'), { agentId: 'ann' });
    expect([again.status, code(again)]).toEqual([403, 'FORBIDDEN']);
    expect((await post(QUEUE_PATHS.claim('c1'), { agentId: 'bob' })).status).toBe(200);
  });

  it('transfer moves the contact to another agent, checks its capacity, ends the old connection', async () => {
    await enqueue('c1');
    await enqueue('c2');
    const waiting = await post(QUEUE_PATHS.transfer('c1'), { toAgentId: 'bob' });
    expect([waiting.status, code(waiting)]).toEqual([409, 'CONFLICT']);
    expect((await post(QUEUE_PATHS.claim('c1'), { agentId: 'ann' })).status).toBe(200);
    expect((await post(QUEUE_PATHS.claim('c2'), { agentId: 'bob' })).status).toBe(200);
    const conn = await as('c1', 'ann', 'agent');

    await call('PUT', QUEUE_PATHS.agent('bob'), { capacity: 1 });
    const full = await post(QUEUE_PATHS.transfer('c1'), { toAgentId: 'bob' });
    expect([full.status, code(full)]).toEqual([429, 'QUOTA_EXCEEDED']);
    await call('PUT', QUEUE_PATHS.agent('bob'), { capacity: 2 });

    const r = await post(QUEUE_PATHS.transfer('c1'), { toAgentId: 'bob' });
    expect(QueueEntryResponse.parse(r.json).entry.agentId).toBe('bob');
    expect((await conn.closed).code).toBe(4403);
    const bob = AgentContactsResponse.parse(
      (await call('GET', QUEUE_PATHS.agentContacts('bob'))).json,
    );
    expect(bob.contacts.map((e) => e.contactId).sort()).toEqual(['c1', 'c2']);
    const info = ContactResponse.parse((await call('GET', `/admin/v1/contacts/c1`)).json);
    expect(info.contact.participants.map((p) => [p.participantId, p.state])).toEqual([
      ['ann', 'left'],
      ['bob', 'active'],
    ]);
    // Back to ann is refused by the membership rules (she left): bob keeps it.
    const back = await post(QUEUE_PATHS.transfer('c1'), { toAgentId: 'ann' });
    expect([back.status, code(back)]).toEqual([403, 'FORBIDDEN']);
    const after = AgentContactsResponse.parse(
      (await call('GET', QUEUE_PATHS.agentContacts('bob'))).json,
    );
    expect(after.contacts).toHaveLength(2);
  });
});

describe('queue: errors', () => {
  it('answers typed errors: unknown contact, bad bodies, no key', async () => {
    const unknown = await post(QUEUE_PATHS.claim('nope'), { agentId: 'ann' });
    expect([unknown.status, code(unknown)]).toEqual([404, 'NOT_FOUND']);
    const rel = await post(QUEUE_PATHS.release('nope'), { agentId: 'ann' });
    expect([rel.status, code(rel)]).toEqual([404, 'NOT_FOUND']);
    await enqueue('c1');
    for (const [path, body] of [
      [QUEUE_PATHS.claim('c1'), {}],
      [QUEUE_PATHS.claim('c1'), { agentId: 'bad id!' }],
      [QUEUE_PATHS.claim('c1'), { agentId: 'a', extra: 1 }],
      [QUEUE_PATHS.transfer('c1'), { to: 'b' }],
      [QUEUE_PATHS.queue, { contactId: 'x'.repeat(65) }],
    ] as const) {
      const r = await post(path, body);
      expect([r.status, code(r)]).toEqual([400, 'BAD_REQUEST']);
    }
    for (const body of [{}, { capacity: -1 }, { capacity: 101 }, { availability: 'busy' }]) {
      const r = await call('PUT', QUEUE_PATHS.agent('ann'), body);
      expect([r.status, code(r)]).toEqual([400, 'BAD_REQUEST']);
    }
    const noKey = await call('GET', QUEUE_PATHS.queue, undefined, null);
    expect([noKey.status, code(noKey)]).toEqual([401, 'AUTH_REQUIRED']);
    const del = await call('DELETE', QUEUE_PATHS.queue);
    expect([del.status, code(del)]).toEqual([404, 'NOT_FOUND']);
  });
});
