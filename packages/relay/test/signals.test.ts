/**
 * Signals at the relay (signals.ts, docs/protocol.md "Signals: typing and seen"), over real
 * sockets on 127.0.0.1 and a real SQLite file: forwarded to the other joined members only (not
 * back to the sending connection), across relays sharing a fan-out (in-process, and Redis when
 * redis-server is installed), never stored; refused for a
 * scanner, before join, over the size limit, over the rate (RATE_LIMITED, connection open), and
 * from a kicked participant.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SIGNAL_LIMITS, type Role, type SealedSignal } from '@latchkey/protocol';
import { adminAuthorization, deriveAdminKey } from '@latchkey/tokens';
import {
  InProcessFanout,
  SqliteMessageStore,
  createRelay,
  type Relay,
  type RelayOptions,
} from '../src/index.ts';
import { RedisFanout } from '../src/redis-fanout.ts';
import { SECRET, TestClient, token } from './_helpers.ts';
import { freePort } from './_services.ts';

const haveRedis = spawnSync('sh', ['-c', 'command -v redis-server']).status === 0;

/** A throwaway redis-server on 127.0.0.1 (no persistence); resolves once it accepts connections. */
async function redisServer(): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      if (d.toString().includes('Ready to accept connections')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`redis-server exited with ${code}`)));
  });
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    },
  };
}

let dir: string;
let dbPath: string;
let store: SqliteMessageStore;
const relays: Relay[] = [];
const clients: TestClient[] = [];
const b64 = (n: number): string => randomBytes(n).toString('base64url');

function fakeSignal(over: Partial<SealedSignal> = {}): SealedSignal {
  return {
    epoch: 0,
    nonce: b64(12),
    ciphertext: b64(60),
    sig: b64(64),
    cert: { body: b64(300), sig: b64(64) },
    ...over,
  };
}

async function start(over: Partial<RelayOptions> = {}): Promise<string> {
  const relay = createRelay({ store, apiSecret: SECRET, ...over });
  relays.push(relay);
  return (await relay.listen({ host: '127.0.0.1', port: 0 })).url;
}

async function member(url: string, p: string, role: Role = 'visitor', join = true) {
  const c = await TestClient.as(url, 'c1', p, role);
  clients.push(c);
  if (join) {
    c.send({ v: 1, type: 'join', since: 0 });
    await c.next('joined');
  }
  return c;
}

/** A ping round trip: every frame the relay sent before its pong has arrived. */
async function settle(c: TestClient): Promise<void> {
  const id = b64(6);
  c.send({ v: 1, type: 'ping', id });
  for (;;) if ((await c.next('pong')).id === id) return;
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'latchkey-signals-'));
  dbPath = join(dir, 'messages.db');
  store = new SqliteMessageStore({ path: dbPath });
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.ws.terminate();
  for (const r of relays.splice(0)) await r.close();
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

describe('relay: signals', () => {
  it('go to the other joined members only, as sent, and are never stored', async () => {
    const url = await start();
    const v = await member(url, 'v');
    const a = await member(url, 'a', 'agent');
    const s = await member(url, 's', 'supervisor');
    const other = await member(url, 'v', 'visitor'); // the sender's second connection
    const signal = fakeSignal();
    v.send({ v: 1, type: 'signal', signal });
    for (const c of [a, s, other]) {
      expect(await c.next('signal')).toEqual({ v: 1, type: 'signal', from: 'v', signal });
    }
    // a supervisor may send (seen receipts); the relay cannot tell the kinds apart
    s.send({ v: 1, type: 'signal', signal: fakeSignal() });
    expect((await v.next('signal')).from).toBe('s');
    await settle(v);
    expect(v.frames.filter((f) => f.type === 'signal')).toEqual([]);
    expect(await store.head('c1')).toBe(0);
    expect((await store.history('c1', 0, 10)).envelopes).toEqual([]);
    await store.close();
    const db = new Database(dbPath, { readonly: true });
    try {
      const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as {
        name: string;
      }[];
      for (const { name } of tables) {
        const rows = db.prepare(`SELECT * FROM "${name}"`).all();
        expect(JSON.stringify(rows)).not.toContain(signal.ciphertext);
        expect(JSON.stringify(rows)).not.toContain(signal.nonce);
      }
    } finally {
      db.close();
      store = new SqliteMessageStore({ path: dbPath });
    }
  });

  it('reach members connected to another relay of the cluster (shared fan-out)', async () => {
    const fanout = new InProcessFanout();
    const one = await start({ fanout });
    const two = await start({ fanout });
    const v = await member(one, 'v');
    const a = await member(two, 'a', 'agent');
    const signal = fakeSignal();
    v.send({ v: 1, type: 'signal', signal });
    expect(await a.next('signal')).toMatchObject({ from: 'v', signal });
  });

  it.runIf(haveRedis)('reach members connected to another relay through Redis', async () => {
    const redis = await redisServer();
    const fanoutOne = new RedisFanout({ url: redis.url });
    const fanoutTwo = new RedisFanout({ url: redis.url });
    try {
      const one = await start({ fanout: fanoutOne });
      const two = await start({ fanout: fanoutTwo });
      const v = await member(one, 'v');
      const a = await member(two, 'a', 'agent');
      const signal = fakeSignal();
      v.send({ v: 1, type: 'signal', signal });
      expect(await a.next('signal', 5000)).toEqual({ v: 1, type: 'signal', from: 'v', signal });
      await settle(v);
      expect(v.frames.filter((f) => f.type === 'signal')).toEqual([]);
    } finally {
      for (const c of clients.splice(0)) c.ws.terminate();
      for (const r of relays.splice(0)) await r.close();
      await Promise.all([fanoutOne.close(), fanoutTwo.close()]);
      await redis.stop();
    }
  });

  it('are refused from a scanner, before join, and over the size limit', async () => {
    const url = await start();
    const a = await member(url, 'a', 'agent');
    const scanner = await member(url, 'scan', 'scanner');
    scanner.send({ v: 1, type: 'signal', id: 's1', signal: fakeSignal() });
    expect(await scanner.next('error')).toMatchObject({ code: 'FORBIDDEN', ref: { id: 's1' } });
    const early = await member(url, 'v', 'visitor', false);
    early.send({ v: 1, type: 'signal', signal: fakeSignal() });
    expect(await early.next('error')).toMatchObject({ code: 'BAD_REQUEST' });
    const v = await member(url, 'v2');
    const big = fakeSignal({ ciphertext: b64(SIGNAL_LIMITS.maxFrameBytes) });
    v.send({ v: 1, type: 'signal', signal: big });
    expect(await v.next('error')).toMatchObject({ code: 'BAD_FRAME' });
    const fatCert = fakeSignal({ cert: { body: b64(2000), sig: b64(64) } });
    v.send({ v: 1, type: 'signal', signal: fatCert });
    expect(await v.next('error')).toMatchObject({ code: 'BAD_FRAME' });
    await settle(a);
    expect(a.frames.filter((f) => f.type === 'signal')).toEqual([]);
    // all of them are still connected
    for (const c of [scanner, early, v]) await settle(c);
  });

  it('are rate-limited per connection: RATE_LIMITED, the connection stays open', async () => {
    const url = await start();
    const v = await member(url, 'v');
    const a = await member(url, 'a', 'agent');
    const n = SIGNAL_LIMITS.burst + 10;
    for (let i = 0; i < n; i++) v.send({ v: 1, type: 'signal', signal: fakeSignal() });
    await settle(v);
    const limited = v.frames.filter((f) => f.type === 'error' && f.code === 'RATE_LIMITED');
    expect(limited.length).toBeGreaterThanOrEqual(n - SIGNAL_LIMITS.burst - 1);
    await settle(a);
    const got = a.frames.filter((f) => f.type === 'signal').length;
    expect(got).toBe(n - limited.length);
    expect(got).toBeLessThanOrEqual(SIGNAL_LIMITS.burst + 1);
    // messages still flow on the same connection
    await settle(v);
  });

  it('stop with a kick: the kicked participant is cut off and cannot come back to signal', async () => {
    const url = await start();
    const v = await member(url, 'v');
    const a = await member(url, 'a', 'agent');
    const http = url.replace(/^ws/, 'http');
    const res = await fetch(`${http}/admin/v1/contacts/c1/kick`, {
      method: 'POST',
      headers: {
        authorization: adminAuthorization(deriveAdminKey(SECRET)),
        'content-type': 'application/json',
      },
      body: JSON.stringify({ participantId: 'a' }),
    });
    expect(res.status).toBe(200);
    expect(await a.next('error')).toMatchObject({ code: 'FORBIDDEN' });
    await a.closed;
    const again = await TestClient.open(url);
    clients.push(again);
    again.send({ v: 1, type: 'auth', token: await token('c1', 'a', 'agent') });
    again.send({ v: 1, type: 'signal', signal: fakeSignal() });
    expect(await again.next('error')).toMatchObject({ code: 'FORBIDDEN' });
    await again.closed;
    await settle(v);
    expect(v.frames.filter((f) => f.type === 'signal')).toEqual([]);
  });
});
