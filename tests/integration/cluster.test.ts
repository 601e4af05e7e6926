/**
 * No single point of failure (issue 17, docs/operations.md "A cluster"): three relays on
 * PostgreSQL and Redis and two key services on one key database, each set behind a TCP
 * balancer. Clients join, chat, are kicked and transferred while one key service and then one
 * relay are killed with SIGKILL. Afterwards: no acknowledged message lost or duplicated, every
 * remaining client on the same current epoch, the shared access log's chain verifies with no gap,
 * and every webhook event (the relays' and the key services') arrived once (a call in flight at a
 * SIGKILL may come once more, with the same webhook-id).
 *
 * Two key services receiving the same kick at the same moment rotate once (also at the key
 * service level in apps/keyd/test/key-store-pg.test.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LatchkeyClient, type WebSocketConstructor } from '@latchkey/client';
import { openPgServiceState } from '@latchkey/keys/postgres';
import { adminAuthorization, deriveAdminKey, mintToken } from '@latchkey/tokens';
import { freePort, testServices } from '../../packages/relay/test/_services.ts';
import { until } from './harness.ts';
import { startTcpBalancer, type TcpBalancer } from './tcp-balancer.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const MAIN = join(ROOT, 'tests', 'integration', '_cluster-main.ts');

const services = await testServices('cluster integration test');
const secret = crypto.getRandomValues(new Uint8Array(32));
const master = crypto.getRandomValues(new Uint8Array(32));
const ADMIN = adminAuthorization(deriveAdminKey(secret));

interface Proc {
  kind: 'relay' | 'keys';
  index: number;
  port: number;
  child: ChildProcess | undefined;
}

let dir: string;
let keysStore: string;
const relays: Proc[] = [];
const keyServices: Proc[] = [];
const balancers: TcpBalancer[] = [];
let relayLb: number;
let keysLb: number;

async function start(p: Proc): Promise<void> {
  if (!services) return;
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, p.kind], {
    cwd: ROOT,
    env: {
      ...process.env,
      CLUSTER_PORT: String(p.port),
      CLUSTER_DATA: join(dir, `${p.kind}${p.index}`),
      CLUSTER_SECRET: Buffer.from(secret).toString('base64url'),
      CLUSTER_MASTER: Buffer.from(master).toString('base64url'),
      CLUSTER_STORE: services.pgUrl,
      CLUSTER_FANOUT: services.redisUrl,
      CLUSTER_KEYS_STORE: keysStore,
      CLUSTER_WEBHOOK_KEY_FILE: join(dir, 'webhooks.key'),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  p.child = child;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${p.kind} did not start`)), 60_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith('listening ')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`${p.kind} exited with ${code}`)));
  });
}

async function kill(p: Proc): Promise<void> {
  const child = p.child;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

/** Webhook calls received, by event id, with the event type. */
const received = new Map<string, { type: string; count: number }>();
let receiver: HttpServer;
let receiverUrl: string;

async function startReceiver(): Promise<void> {
  receiver = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const id = String(req.headers['webhook-id']);
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { type: string };
      const seen = received.get(id);
      if (seen) seen.count++;
      else received.set(id, { type: body.type, count: 1 });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/hook`;
}

async function admin(base: number, path: string, body: object): Promise<Record<string, unknown>> {
  // A key service or relay that dies between connect and answer: the admin tool retries (the
  // actions are idempotent), through the balancer, on another one.
  for (let attempt = 0; ; attempt++) {
    try {
      const res = await fetch(`http://127.0.0.1:${base}${path}`, {
        method: 'POST',
        headers: { authorization: ADMIN, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      const out = (await res.json()) as Record<string, unknown>;
      if (res.status < 200 || res.status > 299)
        throw new Error(`${path}: ${res.status} ${JSON.stringify(out)}`);
      return out;
    } catch (err) {
      if (attempt >= 5) throw err;
    }
  }
}

beforeAll(async () => {
  if (!services) return;
  dir = await mkdtemp(join(tmpdir(), 'latchkey-cluster-'));
  keysStore = await services.newDatabase();
  await writeFile(join(dir, 'webhooks.key'), crypto.getRandomValues(new Uint8Array(32)), {
    mode: 0o600,
  });
  for (let i = 0; i < 3; i++)
    relays.push({ kind: 'relay', index: i, port: await freePort(), child: undefined });
  for (let i = 0; i < 2; i++)
    keyServices.push({ kind: 'keys', index: i, port: await freePort(), child: undefined });
  // All at once: migrations run once under their advisory locks, the shared secrets are created
  // once (the first insert wins, the others read it).
  await Promise.all([...relays, ...keyServices].map((p) => start(p)));
  for (const set of [relays, keyServices])
    balancers.push(await startTcpBalancer(() => set.map((p) => p.port)));
  [relayLb, keysLb] = balancers.map((b) => b.port) as [number, number];
  await startReceiver();
}, 120_000);

afterAll(async () => {
  if (!services) return;
  for (const b of balancers) await b.close();
  await Promise.all([...relays, ...keyServices].map((p) => kill(p)));
  await new Promise((r) => receiver.close(r));
  await services.stop();
  await rm(dir, { recursive: true, force: true });
});

const clients: LatchkeyClient[] = [];
async function client(
  contactId: string,
  participantId: string,
  role: 'visitor' | 'agent' = 'visitor',
): Promise<LatchkeyClient> {
  const c = await LatchkeyClient.connect({
    relayUrl: `ws://127.0.0.1:${relayLb}`,
    keysUrl: `http://127.0.0.1:${keysLb}`,
    token: await mintToken(secret, { contactId, participantId, role, ttlSeconds: 600 }),
    WebSocket: WebSocket as unknown as WebSocketConstructor,
    backoff: { minMs: 20, maxMs: 300 },
  });
  clients.push(c);
  return c;
}

describe.skipIf(!services)('three relays and two key services, PostgreSQL and Redis', () => {
  it('the same kick at both key services at once rotates once', async () => {
    const [a, b] = keyServices as [Proc, Proc];
    const v = await client('race-1', 'v1');
    const g = await client('race-1', 'g1', 'agent');
    await v.send('hello');
    await g.send('hi');
    const answers = await Promise.all(
      [a, b].map((k) => admin(k.port, '/admin/v1/contacts/race-1/kick', { participantId: 'v1' })),
    );
    expect(answers.map((x) => x.rotatedEpoch)).toEqual([1, 1]);
    await admin(relayLb, '/admin/v1/contacts/race-1/kick', { participantId: 'v1' });
    await g.send('after the kick');
    await until(() => g.epoch === 1, 15_000, 'the agent on epoch 1');
  }, 60_000);

  it('chat, kicks and a transfer survive SIGKILL of a key service and of a relay', async () => {
    const keysHook = await admin(keysLb, '/admin/v1/webhooks', { url: receiverUrl });
    const relayHook = await admin(relayLb, '/admin/v1/webhooks', { url: receiverUrl });
    expect(keysHook.secret).toBeTruthy();
    expect(relayHook.secret).toBeTruthy();
    const id = 'ha-1';
    const visitor = await client(id, 'v1');
    const agent = await client(id, 'a1', 'agent');
    const leaver = await client(id, 'a2', 'agent');
    const reader = await client(id, 'r1', 'agent');
    const acked = new Map<string, number>();
    let stop = false;
    const loop = async (c: LatchkeyClient): Promise<void> => {
      for (let n = 0; !stop; n++) {
        try {
          const r = await c.send(`${c.participantId} #${n}`);
          acked.set(r.msgId, r.seq);
        } catch {
          // Not acknowledged (its relay or key service died meanwhile): may be lost, never
          // counted. The client reconnects through the balancer.
          await new Promise((r) => setImmediate(r));
        }
      }
    };
    const loops = [loop(visitor), loop(agent)];
    const kicked: string[] = [];
    const kick = async (participantId: string): Promise<void> => {
      const k = await client(id, participantId);
      await k.send(`${participantId} was here`);
      // Key service first, then the relay (docs/admin-api.md "Flow").
      await admin(keysLb, `/admin/v1/contacts/${id}/kick`, { participantId });
      await admin(relayLb, `/admin/v1/contacts/${id}/kick`, { participantId });
      kicked.push(participantId);
    };
    await until(() => acked.size >= 20, 30_000, 'traffic before the kills');
    await kick('x1');
    await kill(keyServices[0] as Proc);
    await kick('x2');
    const before = acked.size;
    await until(() => acked.size >= before + 20, 30_000, 'traffic after the key service died');
    // The transfer: a2 leaves, a3 joins as agent.
    await admin(keysLb, `/admin/v1/contacts/${id}/transfer`, { from: 'a2', to: 'a3' });
    await admin(relayLb, `/admin/v1/contacts/${id}/transfer`, { from: 'a2', to: 'a3' });
    leaver.close();
    const joiner = await client(id, 'a3', 'agent');
    await kill(relays[1] as Proc);
    await kick('x3');
    const mid = acked.size;
    await until(() => acked.size >= mid + 20, 30_000, 'traffic after the relay died');
    stop = true;
    await Promise.all(loops);

    // Every acknowledged message is stored once, at its acknowledged seq, in one gapless order.
    const auditor = await client(id, 'auditor', 'agent');
    const history = await auditor.history(0);
    expect(history.every((h) => h.ok)).toBe(true);
    expect(history.map((h) => h.seq)).toEqual(
      Array.from({ length: history.length }, (_, i) => i + 1),
    );
    const byMsgId = new Map(history.map((h) => [h.msgId, h.seq]));
    expect(byMsgId.size).toBe(history.length);
    for (const [msgId, seq] of acked) expect(byMsgId.get(msgId)).toBe(seq);

    // Three kicks and a transfer: four rotations, and every member still there is on epoch 4.
    await agent.send('the last word');
    const members = [visitor, agent, reader, joiner, auditor];
    await until(
      () => members.every((m) => m.epoch === 4),
      30_000,
      'every member on the current epoch',
    );

    // One access-log chain for both key services: it verifies with no gap.
    const state = await openPgServiceState({ url: keysStore, masterKey: master });
    try {
      const verdict = await state.accessLog.verify();
      expect(verdict.ok).toBe(true);
      const records = await state.accessLog.list({ limit: 10_000 });
      expect(records.length).toBe(verdict.ok ? verdict.count : -1);
      expect(records.map((r) => r.seq)).toEqual(records.map((_, i) => i + 1));
      expect(records.some((r) => r.contactId === id && r.outcome === 'granted')).toBe(true);
    } finally {
      await state.close();
    }

    // Webhooks: each event once; the rotations (key service) and the kicks (relay) all there.
    await until(
      () =>
        [...received.values()].filter((e) => e.type === 'key.rotated').length >= 4 &&
        [...received.values()].filter((e) => e.type === 'participant.kicked').length >= 3,
      // A delivery claimed by a killed process is taken over after its lease (60 s).
      150_000,
      'the webhook events',
    );
    // Exactly once, except for what cannot be: a process killed after its call reached the
    // receiver but before it recorded the outcome has that one call sent again by another after
    // the lease, with the same webhook-id (receivers drop it). Each endpoint has one call in
    // flight at a time across the cluster and each was served by processes of which one was
    // killed, so at most one such repeat per endpoint; two live processes racing would repeat
    // many.
    const repeated = [...received].filter(([, e]) => e.count > 1);
    expect(repeated.length, JSON.stringify(repeated)).toBeLessThanOrEqual(2);
    for (const [eventId, e] of repeated) expect(e.count, `${e.type} ${eventId}`).toBe(2);
  }, 300_000);

  afterAll(() => {
    for (const c of clients) c.close();
  });
});
