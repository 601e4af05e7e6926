/**
 * The relay over a real WebSocket on 127.0.0.1 (port 0) and a real SQLite file in a temporary
 * directory: the protocol flow, ordering and idempotency, and hostile input.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LatchkeyError, type SealedEnvelope } from '@latchkey/protocol';
import {
  createRelay,
  SqliteMessageStore,
  type MessageStore,
  type Relay,
  type RelayLogEvent,
  type RelayOptions,
} from '../src/index.ts';
import { SECRET, TestClient, fakeEnvelope, sleep, token } from './_helpers.ts';

let dir: string;
let store: SqliteMessageStore;
let relay: Relay | undefined;
let url: string;
let events: RelayLogEvent[];
const clients: TestClient[] = [];

async function start(over: Partial<RelayOptions> = {}): Promise<Relay> {
  events = [];
  relay = createRelay({ store, apiSecret: SECRET, log: (e) => events.push(e), ...over });
  ({ url } = await relay.listen({ host: '127.0.0.1', port: 0 }));
  return relay;
}

async function open(): Promise<TestClient> {
  const c = await TestClient.open(url);
  clients.push(c);
  return c;
}

async function as(
  contactId: string,
  participantId: string,
  role: 'visitor' | 'agent' | 'supervisor' = 'visitor',
): Promise<TestClient> {
  const c = await TestClient.as(url, contactId, participantId, role);
  clients.push(c);
  return c;
}

async function joined(
  contactId: string,
  participantId: string,
  role: 'visitor' | 'agent' | 'supervisor' = 'visitor',
  since = 0,
): Promise<TestClient> {
  const c = await as(contactId, participantId, role);
  c.send({ v: 1, type: 'join', since });
  await c.next('joined');
  return c;
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'latchkey-relay-'));
  store = new SqliteMessageStore({ path: join(dir, 'messages.db') });
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.ws.terminate();
  await relay?.close();
  relay = undefined;
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

describe('relay: flow', () => {
  it('auth -> ready, send -> ack, deliver to the other participant', async () => {
    await start();
    const v = await joined('c1', 'visitor1');
    const a = await joined('c1', 'agent1', 'agent');
    const e = fakeEnvelope('c1', 'visitor1');
    v.sendEnvelope(e);
    expect(await v.next('ack')).toEqual({
      v: 1,
      type: 'ack',
      msgId: e.msgId,
      seq: 1,
      duplicate: false,
    });
    expect((await a.next('deliver')).envelope).toEqual({ ...e, seq: 1 });
    await sleep(30);
    expect(v.frames.filter((f) => f.type === 'deliver')).toHaveLength(0); // not echoed to the sender
    const b = fakeEnvelope('c1', 'agent1');
    a.sendEnvelope(b);
    expect((await a.next('ack')).seq).toBe(2);
    expect((await v.next('deliver')).envelope).toEqual({ ...b, seq: 2 });
    // ready reports the head
    const late = await open();
    late.send({ v: 1, type: 'auth', token: await token('c1', 'late') });
    expect(await late.next('ready')).toMatchObject({
      contactId: 'c1',
      participantId: 'late',
      role: 'visitor',
      head: 2,
      maxFrameBytes: 65536,
    });
    late.send({ v: 1, type: 'ping', id: 'p1' });
    expect(await late.next('pong')).toEqual({ v: 1, type: 'pong', id: 'p1' });
  });

  it('does not deliver across contacts; a second tab of the sender gets the message', async () => {
    await start();
    const tab1 = await joined('c1', 'v1');
    const tab2 = await joined('c1', 'v1');
    const other = await joined('c2', 'v2');
    const e = fakeEnvelope('c1', 'v1');
    tab1.sendEnvelope(e);
    await tab1.next('ack');
    expect((await tab2.next('deliver')).envelope.msgId).toBe(e.msgId);
    await sleep(30);
    expect(other.frames).toHaveLength(0);
    expect(tab1.frames).toHaveLength(0);
  });

  it('assigns gap-free, ordered seqs and delivers in that order', async () => {
    await start();
    const a = await joined('c1', 'a', 'agent');
    const v = await joined('c1', 'v');
    const envs = Array.from({ length: 40 }, (_, i) => fakeEnvelope('c1', i % 2 ? 'a' : 'v'));
    envs.forEach((e, i) => (i % 2 ? a : v).sendEnvelope(e));
    const acks = [...(await a.take('ack', 20)), ...(await v.take('ack', 20))];
    expect(acks.map((x) => x.seq).sort((x, y) => x - y)).toEqual(envs.map((_, i) => i + 1));
    const obs = await joined('c1', 'observer', 'supervisor');
    expect(obs.log.find((f) => f.type === 'joined')).toMatchObject({ head: 40 });
    const seen = obs.log.filter((f) => f.type === 'deliver').map((f) => f.envelope.seq);
    expect(seen).toEqual(envs.map((_, i) => i + 1));
  });

  it('returns the original seq for a retried msgId, and CONFLICT for a reuse', async () => {
    await start();
    const v = await joined('c1', 'v');
    const a = await joined('c1', 'a', 'agent');
    const e = fakeEnvelope('c1', 'v');
    v.sendEnvelope(e);
    v.sendEnvelope(fakeEnvelope('c1', 'v'));
    await v.take('ack', 2);
    v.sendEnvelope(e);
    expect(await v.next('ack')).toEqual({
      v: 1,
      type: 'ack',
      msgId: e.msgId,
      seq: 1,
      duplicate: true,
    });
    v.sendEnvelope({ ...e, ciphertext: fakeEnvelope('c1', 'v').ciphertext });
    expect(await v.next('error')).toMatchObject({ code: 'CONFLICT', ref: { msgId: e.msgId } });
    await sleep(30);
    expect(a.log.filter((f) => f.type === 'deliver')).toHaveLength(2); // the retry is not delivered again
    expect(await store.head('c1')).toBe(2);
  });

  it('join with since replays exactly the missing envelopes, then goes live', async () => {
    await start();
    const v = await as('c1', 'v');
    const envs = Array.from({ length: 5 }, () => fakeEnvelope('c1', 'v'));
    for (const e of envs) v.sendEnvelope(e);
    await v.take('ack', 5);
    const a = await as('c1', 'a', 'agent');
    a.send({ v: 1, type: 'join', since: 2 });
    expect(await a.next('joined')).toEqual({ v: 1, type: 'joined', head: 5 });
    const replay = a.log.filter((f) => f.type === 'deliver').map((f) => f.envelope);
    expect(replay).toEqual(envs.slice(2).map((e, i) => ({ ...e, seq: i + 3 })));
    a.frames.length = 0;
    const live = fakeEnvelope('c1', 'v');
    v.sendEnvelope(live);
    expect((await a.next('deliver')).envelope).toEqual({ ...live, seq: 6 });
  });

  it('a join racing a stream of sends sees every seq exactly once, in order', async () => {
    await start({ rateLimit: { perSecond: 10_000, burst: 10_000 } });
    const v = await as('c1', 'v');
    const N = 300;
    for (let i = 0; i < N; i++) {
      v.sendEnvelope(fakeEnvelope('c1', 'v'));
      if (i === 100) await sleep(1);
    }
    const a = await as('c1', 'a', 'agent');
    a.send({ v: 1, type: 'join', since: 0 });
    await v.take('ack', N);
    await a.next('joined');
    const deadline = Date.now() + 5000;
    while (a.log.filter((f) => f.type === 'deliver').length < N && Date.now() < deadline)
      await sleep(10);
    const seqs = a.log.filter((f) => f.type === 'deliver').map((f) => f.envelope.seq);
    expect(seqs).toEqual(Array.from({ length: N }, (_, i) => i + 1));
  });

  it('live envelopes committed while a slow store replays are buffered, not lost or doubled', async () => {
    const slowReads: MessageStore = {
      get stats() {
        return store.stats;
      },
      appendBatch: (e) => store.appendBatch(e),
      head: (c) => store.head(c),
      async history(c, s, l) {
        const page = await store.history(c, s, l);
        await sleep(40); // commits land after this snapshot
        return page;
      },
      close: () => Promise.resolve(),
    };
    await start({ store: slowReads, contacts: store });
    const v = await as('c1', 'v');
    for (let i = 0; i < 3; i++) v.sendEnvelope(fakeEnvelope('c1', 'v'));
    await v.take('ack', 3);
    const a = await as('c1', 'a', 'agent');
    a.send({ v: 1, type: 'join', since: 1 });
    await sleep(10);
    for (let i = 0; i < 3; i++) v.sendEnvelope(fakeEnvelope('c1', 'v'));
    await v.take('ack', 3);
    expect(await a.next('joined')).toMatchObject({ head: 6 });
    expect(a.log.filter((f) => f.type === 'deliver').map((f) => f.envelope.seq)).toEqual([
      2, 3, 4, 5, 6,
    ]);
  });

  it('pages history with head and more', async () => {
    await start();
    const v = await as('c1', 'v');
    for (let i = 0; i < 7; i++) v.sendEnvelope(fakeEnvelope('c1', 'v'));
    await v.take('ack', 7);
    v.send({ v: 1, type: 'history', id: 'h1', since: 0, limit: 3 });
    const h1 = await v.next('history');
    expect(h1).toMatchObject({ id: 'h1', head: 7, more: true });
    expect(h1.envelopes.map((e) => e.seq)).toEqual([1, 2, 3]);
    v.send({ v: 1, type: 'history', id: 'h2', since: 3, limit: 3 });
    expect((await v.next('history')).envelopes.map((e) => e.seq)).toEqual([4, 5, 6]);
    v.send({ v: 1, type: 'history', id: 'h3', since: 6 });
    const h3 = await v.next('history');
    expect(h3.envelopes.map((e) => e.seq)).toEqual([7]);
    expect(h3.more).toBe(false);
  });

  it('acks only after the group commit, and commits a burst in fewer transactions', async () => {
    const committed = new Set<number>();
    const slow: MessageStore = {
      get stats() {
        return store.stats;
      },
      async appendBatch(envs: readonly SealedEnvelope[]) {
        await sleep(20);
        const r = await store.appendBatch(envs);
        for (const x of r) if (x.ok) committed.add(x.seq);
        return r;
      },
      head: (c) => store.head(c),
      history: (c, s, l) => store.history(c, s, l),
      close: () => Promise.resolve(),
    };
    await start({ store: slow, contacts: store });
    const v = await as('c1', 'v');
    const N = 60;
    const before = store.stats.transactions;
    const early: number[] = [];
    v.ws.on('message', (d) => {
      const f = JSON.parse(String(d)) as { type: string; seq?: number };
      if (f.type === 'ack' && !committed.has(f.seq ?? -1)) early.push(f.seq ?? -1);
    });
    for (let i = 0; i < N; i++) v.sendEnvelope(fakeEnvelope('c1', 'v'));
    const acks = await v.take('ack', N);
    expect(early).toEqual([]);
    expect(acks.map((a) => a.seq)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
    const txs = store.stats.transactions - before;
    expect(txs).toBeGreaterThanOrEqual(1);
    expect(txs).toBeLessThan(N);
  });

  it('answers every send of a failed commit with UNAVAILABLE and stores none of them', async () => {
    let fail = true;
    const flaky: MessageStore = {
      get stats() {
        return store.stats;
      },
      appendBatch: (e) =>
        fail
          ? Promise.reject(new LatchkeyError('UNAVAILABLE', 'x', { detail: 'disk full' }))
          : store.appendBatch(e),
      head: (c) => store.head(c),
      history: (c, s, l) => store.history(c, s, l),
      close: () => Promise.resolve(),
    };
    await start({ store: flaky, contacts: store });
    const v = await as('c1', 'v');
    const envs = [fakeEnvelope('c1', 'v'), fakeEnvelope('c1', 'v')];
    for (const e of envs) v.sendEnvelope(e);
    const errs = await v.take('error', 2);
    expect(errs.map((e) => [e.code, e.ref?.msgId])).toEqual(
      envs.map((e) => ['UNAVAILABLE', e.msgId]),
    );
    expect(errs[0]?.message).not.toContain('disk');
    expect(await store.head('c1')).toBe(0);
    expect(events.some((e) => e.event === 'commit-failed')).toBe(true);
    fail = false;
    v.sendEnvelope(envs[0] as SealedEnvelope);
    expect(await v.next('ack')).toMatchObject({ seq: 1, duplicate: false });
  });

  it('close() acks pending sends, then closes clients with 1001', async () => {
    let release: () => void = () => undefined;
    let started = false;
    const gate: MessageStore = {
      get stats() {
        return store.stats;
      },
      async appendBatch(envs: readonly SealedEnvelope[]) {
        started = true;
        await new Promise<void>((r) => (release = r));
        return store.appendBatch(envs);
      },
      head: (c) => store.head(c),
      history: (c, s, l) => store.history(c, s, l),
      close: () => Promise.resolve(),
    };
    const r = await start({ store: gate, contacts: store });
    const v = await as('c1', 'v');
    v.sendEnvelope(fakeEnvelope('c1', 'v'));
    while (!started) await sleep(5);
    const closing = r.close();
    release();
    await closing;
    expect(v.log.map((f) => f.type)).toContain('ack');
    expect((await v.closed).code).toBe(1001);
    relay = undefined;
    await expect(TestClient.open(url)).rejects.toThrow();
  });
});

describe('relay: auth', () => {
  it('closes with 4408 when no auth arrives in time', async () => {
    await start({ authTimeoutMs: 100 });
    const c = await open();
    expect(await c.next('error')).toMatchObject({ code: 'AUTH_TIMEOUT' });
    expect((await c.closed).code).toBe(4408);
  });

  it('refuses a bad, a wrongly signed and an expired token with 4401', async () => {
    await start();
    const cases: [string, string][] = [
      ['not.a.jwt', 'AUTH_INVALID'],
      [
        await (async () => {
          const { mintToken } = await import('@latchkey/tokens');
          return mintToken(new Uint8Array(32).fill(1), {
            contactId: 'c1',
            participantId: 'v',
            role: 'visitor',
            ttlSeconds: 60,
          });
        })(),
        'AUTH_INVALID',
      ],
      [
        await token('c1', 'v', 'visitor', {
          now: Math.floor(Date.now() / 1000) - 3600,
          ttlSeconds: 60,
        }),
        'AUTH_EXPIRED',
      ],
    ];
    for (const [t, code] of cases) {
      const c = await open();
      c.send({ v: 1, type: 'auth', token: t });
      expect(await c.next('error')).toMatchObject({ code });
      expect((await c.closed).code).toBe(4401);
    }
  });

  it('requires auth as the first frame', async () => {
    await start();
    const c = await open();
    c.send({ v: 1, type: 'join', since: 0 });
    expect(await c.next('error')).toMatchObject({ code: 'AUTH_REQUIRED' });
    expect((await c.closed).code).toBe(4401);
  });

  it('processes frames pipelined behind auth in order', async () => {
    await start();
    const c = await open();
    c.send({ v: 1, type: 'auth', token: await token('c1', 'v') });
    c.send({ v: 1, type: 'join', since: 0 });
    c.sendEnvelope(fakeEnvelope('c1', 'v'));
    await c.next('ready');
    expect(c.log[0]?.type).toBe('ready');
    await c.next('joined');
    expect(await c.next('ack')).toMatchObject({ seq: 1 });
  });
});

describe('relay: authorisation', () => {
  it('refuses an envelope for another contact or sender with FORBIDDEN, and stays open', async () => {
    await start();
    const v = await as('c1', 'v');
    const a = await joined('c2', 'a', 'agent');
    const other = fakeEnvelope('c2', 'v');
    v.sendEnvelope(other);
    expect(await v.next('error')).toMatchObject({ code: 'FORBIDDEN', ref: { msgId: other.msgId } });
    v.sendEnvelope(fakeEnvelope('c1', 'someone-else'));
    expect(await v.next('error')).toMatchObject({ code: 'FORBIDDEN' });
    v.send({ v: 1, type: 'ping' });
    await v.next('pong');
    expect(await store.head('c2')).toBe(0);
    expect(a.frames).toHaveLength(0);
  });

  it('lets a supervisor read but not send', async () => {
    await start();
    const s = await joined('c1', 'sup', 'supervisor');
    const e = fakeEnvelope('c1', 'sup');
    s.sendEnvelope(e);
    expect(await s.next('error')).toMatchObject({ code: 'FORBIDDEN', ref: { msgId: e.msgId } });
    const v = await as('c1', 'v');
    v.sendEnvelope(fakeEnvelope('c1', 'v'));
    expect((await s.next('deliver')).envelope.seq).toBe(1);
  });
});

describe('relay: hostile input', () => {
  it('closes an oversized frame with 1009', async () => {
    await start();
    const v = await as('c1', 'v');
    v.send('x'.repeat(70_000));
    expect((await v.closed).code).toBe(1009);
    expect(events).toContainEqual(expect.objectContaining({ event: 'error', code: 'TOO_LARGE' }));
  });

  it('answers malformed JSON, an unknown type, a bad envelope and a binary frame with BAD_FRAME and keeps serving', async () => {
    await start();
    const v = await as('c1', 'v');
    const bystander = await joined('c1', 'a', 'agent');
    v.send('{not json');
    v.send({ v: 1, type: 'shout', text: 'hi' });
    v.send({ v: 1, type: 'send', envelope: { ...fakeEnvelope('c1', 'v'), nonce: 'short' } });
    v.send({ v: 1, type: 'join', since: 0, extra: true });
    v.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    const errs = await v.take('error', 5);
    expect(errs.map((e) => e.code)).toEqual([
      'BAD_FRAME',
      'BAD_FRAME',
      'BAD_FRAME',
      'BAD_FRAME',
      'BAD_FRAME',
    ]);
    for (const e of errs) expect(e.message.length).toBeLessThanOrEqual(200);
    // still open, and another client is served
    v.sendEnvelope(fakeEnvelope('c1', 'v'));
    expect((await v.next('ack')).seq).toBe(1);
    expect((await bystander.next('deliver')).envelope.seq).toBe(1);
  });

  it('closes with 4426 on another protocol version', async () => {
    await start();
    const v = await as('c1', 'v');
    v.send({ v: 2, type: 'ping' });
    expect(await v.next('error')).toMatchObject({ code: 'UNSUPPORTED_VERSION' });
    expect((await v.closed).code).toBe(4426);
  });

  it('closes with 1008 after too many protocol errors; the relay survives', async () => {
    await start({ maxProtocolErrors: 10 });
    const v = await as('c1', 'v');
    for (let i = 0; i < 11; i++) v.send('[]');
    expect((await v.closed).code).toBe(1008);
    expect(v.log.filter((f) => f.type === 'error')).toHaveLength(11);
    const w = await as('c1', 'w');
    w.sendEnvelope(fakeEnvelope('c1', 'w'));
    expect((await w.next('ack')).seq).toBe(1);
  });

  it('rate-limits a flood with RATE_LIMITED and closes sustained abuse', async () => {
    await start({ rateLimit: { perSecond: 1, burst: 3 } });
    const v = await as('c1', 'v'); // the auth frame took one token
    for (let i = 0; i < 4; i++) v.send({ v: 1, type: 'ping', id: `p${i}` });
    expect((await v.take('pong', 2)).map((p) => p.id)).toEqual(['p0', 'p1']);
    expect((await v.take('error', 2)).map((e) => e.code)).toEqual(['RATE_LIMITED', 'RATE_LIMITED']);
    for (let i = 0; i < 150; i++) v.send({ v: 1, type: 'ping' });
    expect((await v.closed).code).toBe(1008);
  });

  it('terminates a socket that stops answering pings', async () => {
    await start({ heartbeatMs: 50 });
    const c = await open();
    // stop the client's automatic pong by pausing its socket
    (c.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    await sleep(250);
    expect(events).toContainEqual(expect.objectContaining({ event: 'heartbeat-timeout' }));
    expect(relay?.connections).toBe(0);
  });

  it('never logs tokens, ciphertext or envelope content', async () => {
    await start();
    const t = await token('c1', 'v');
    const c = await open();
    c.send({ v: 1, type: 'auth', token: t });
    await c.next('ready');
    const e = fakeEnvelope('c1', 'v');
    c.sendEnvelope(e);
    await c.next('ack');
    c.send('{"garbage": "' + e.ciphertext + '"');
    await c.next('error');
    const text = JSON.stringify(events);
    for (const secret of [t, e.ciphertext, e.nonce, e.sig, e.cert.body, e.msgId])
      expect(text).not.toContain(secret);
  });
});

describe('relay: persistence', () => {
  it('keeps messages across a relay and store restart', async () => {
    const path = join(dir, 'owned.db');
    relay = createRelay({ store: { path }, apiSecret: SECRET });
    ({ url } = await relay.listen({ host: '127.0.0.1', port: 0 }));
    const v = await as('c1', 'v');
    const e = fakeEnvelope('c1', 'v');
    v.sendEnvelope(e);
    await v.next('ack');
    await relay.close();
    relay = createRelay({ store: { path }, apiSecret: SECRET });
    ({ url } = await relay.listen({ host: '127.0.0.1', port: 0 }));
    const a = await as('c1', 'a', 'agent');
    a.send({ v: 1, type: 'join', since: 0 });
    expect((await a.next('deliver')).envelope).toEqual({ ...e, seq: 1 });
    expect(await a.next('joined')).toMatchObject({ head: 1 });
  });
});
