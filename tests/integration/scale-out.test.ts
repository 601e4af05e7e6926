/**
 * Scale-out (issue 9, docs/operations.md): three relay processes share PostgreSQL (store) and
 * Redis (fan-out) behind a small TCP load balancer, as in the reference topology. Clients spread
 * over them chat; one relay is killed; its clients resume on another with nothing lost or
 * duplicated. Concurrent senders on different relays see one seq order. Kicks reach a
 * participant connected to another relay, and the `rekey` after them reaches the remaining
 * members on every relay. Health, readiness and metrics answer.
 *
 * PostgreSQL and Redis: throwaway instances when the Debian binaries exist, or
 * LATCHKEY_TEST_PG_URL / LATCHKEY_TEST_REDIS_URL; skipped (reason printed) without them,
 * failing under CI=true.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LatchkeyClient, type ChatMessage, type WebSocketConstructor } from '@latchkey/client';
import { openKeyService } from '@latchkey/keyd';
import { deriveAdminKey, mintToken } from '@latchkey/tokens';
import { freePort, testServices } from '../../packages/relay/test/_services.ts';
import { until } from './harness.ts';
import { startTcpBalancer, type TcpBalancer } from './tcp-balancer.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const RELAY_MAIN = join(ROOT, 'apps', 'relay', 'src', 'main.ts');

const services = await testServices('scale-out integration test');
const secret = crypto.getRandomValues(new Uint8Array(32));

interface RelayProc {
  port: number;
  child: ChildProcess | undefined;
}

let dir: string;
let keys: Awaited<ReturnType<typeof openKeyService>>;
const relays: RelayProc[] = [];
let lb: TcpBalancer;
let lbPort: number;

async function startRelayProcess(r: RelayProc, i: number): Promise<void> {
  if (!services) return;
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      RELAY_MAIN,
      '--data',
      join(dir, `r${i}`),
      '--host',
      '127.0.0.1',
      '--port',
      String(r.port),
      '--store',
      services.pgUrl,
      '--fanout',
      services.redisUrl,
    ],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        LATCHKEY_API_SECRET: Buffer.from(secret).toString('base64url'),
        // Relays on one --store share one webhook outbox and so its key (the first creates it).
        LATCHKEY_WEBHOOK_KEY_FILE: join(dir, 'webhooks.key'),
      },
      stdio: ['ignore', 'pipe', 'ignore'],
    },
  );
  r.child = child;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('relay did not start')), 30_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith('relay: ws://')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`relay exited with ${code}`)));
  });
}

async function kill(r: RelayProc): Promise<void> {
  const child = r.child;
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

beforeAll(async () => {
  if (!services) return;
  dir = await mkdtemp(join(tmpdir(), 'latchkey-scale-'));
  keys = await openKeyService({
    dataDir: dir,
    host: '127.0.0.1',
    port: 0,
    apiSecret: secret,
    masterKey: crypto.getRandomValues(new Uint8Array(32)),
  });
  for (let i = 0; i < 3; i++) relays.push({ port: await freePort(), child: undefined });
  // one by one: the first migrates the schema (the others would wait on its advisory lock)
  for (const [i, r] of relays.entries()) await startRelayProcess(r, i);
  lb = await startTcpBalancer(() => relays.map((r) => r.port));
  lbPort = lb.port;
}, 90_000);

afterAll(async () => {
  if (!services) return;
  await lb.close();
  for (const r of relays) await kill(r);
  await keys.close();
  await services.stop();
  await rm(dir, { recursive: true, force: true });
});

const clients: LatchkeyClient[] = [];
async function client(
  contactId: string,
  participantId: string,
  role: 'visitor' | 'agent' = 'visitor',
  live = true,
): Promise<LatchkeyClient> {
  const c = await LatchkeyClient.connect({
    relayUrl: `ws://127.0.0.1:${lbPort}`,
    keysUrl: keys.url,
    token: await mintToken(secret, { contactId, participantId, role, ttlSeconds: 600 }),
    WebSocket: WebSocket as unknown as WebSocketConstructor,
    backoff: { minMs: 20, maxMs: 200 },
    live,
  });
  clients.push(c);
  return c;
}

describe.skipIf(!services)('three relays on PostgreSQL and Redis', () => {
  it('answers /healthz, /readyz and /metrics on each relay', async () => {
    for (const r of relays) {
      const base = `http://127.0.0.1:${r.port}`;
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      const ready = await fetch(`${base}/readyz`);
      expect(ready.status).toBe(200);
      const metrics = await (await fetch(`${base}/metrics`)).text();
      expect(metrics).toContain('# TYPE latchkey_relay_messages_total counter');
      expect(metrics).toMatch(/latchkey_relay_connections \d+/);
      expect(metrics).toContain('latchkey_relay_commit_seconds_bucket{le="+Inf"}');
      expect(metrics).toContain('latchkey_relay_fanout_lag_seconds_count');
    }
  });

  it('concurrent senders on different relays: every reader sees the same seq order', async () => {
    // Round robin: connection i lands on relay i % 3.
    const senders = [
      await client('order-1', 's0'),
      await client('order-1', 's1', 'agent'),
      await client('order-1', 's2'),
    ];
    const readers = [
      await client('order-1', 'r0', 'agent'),
      await client('order-1', 'r1', 'agent'),
      await client('order-1', 'r2', 'agent'),
    ];
    const seen: ChatMessage[][] = readers.map(() => []);
    readers.forEach((r, i) => r.on('message', (m) => seen[i]?.push(m)));
    const acked = new Map<number, string>();
    await Promise.all(
      senders.map(async (s) => {
        for (let n = 0; n < 25; n++) {
          const r = await s.send(`${s.participantId} #${n}`);
          acked.set(r.seq, r.msgId);
        }
      }),
    );
    expect(acked.size).toBe(75);
    await until(
      () => seen.every((s) => s.length === 75),
      15_000,
      'every reader to get every message',
    );
    const expected = Array.from({ length: 75 }, (_, i) => i + 1);
    for (const s of seen) {
      expect(s.map((m) => m.seq)).toEqual(expected);
      expect(s.map((m) => m.msgId)).toEqual(expected.map((q) => acked.get(q)));
    }
  }, 60_000);

  it('a relay is killed: its clients resume on another with nothing lost or duplicated', async () => {
    const senders = [
      await client('crash-1', 'v1'),
      await client('crash-1', 'a1', 'agent'),
      await client('crash-1', 'v2'),
    ];
    const readers = [
      await client('crash-1', 'x0', 'agent'),
      await client('crash-1', 'x1', 'agent'),
      await client('crash-1', 'x2', 'agent'),
    ];
    const seen: ChatMessage[][] = readers.map(() => []);
    readers.forEach((r, i) => r.on('message', (m) => seen[i]?.push(m)));
    const acked = new Map<string, { seq: number; sender: string }>();
    let stop = false;
    const loops = senders.map(async (c) => {
      for (let n = 0; !stop; n++) {
        const r = await c.send(`${c.participantId} #${n}`);
        acked.set(r.msgId, { seq: r.seq, sender: c.participantId });
      }
    });
    await until(() => acked.size >= 30, 15_000, 'traffic before the kill');
    const victim = relays[1] as RelayProc;
    await kill(victim);
    const before = acked.size;
    await until(() => acked.size >= before + 60, 20_000, 'traffic after the kill');
    stop = true;
    await Promise.all(loops);

    const check = await client('crash-1', 'auditor', 'agent', false);
    const history = await check.history(0);
    expect(history.every((h) => h.ok)).toBe(true);
    expect(history.map((h) => h.seq)).toEqual(
      Array.from({ length: history.length }, (_, i) => i + 1),
    );
    const byMsgId = new Map(history.map((h) => [h.msgId, h]));
    expect(byMsgId.size).toBe(history.length);
    for (const [msgId, a] of acked) expect(byMsgId.get(msgId)?.seq).toBe(a.seq);
    await until(
      () => seen.every((s) => s.length === history.length),
      15_000,
      'every reader to catch up',
    );
    for (const s of seen) expect(s.map((m) => m.seq)).toEqual(history.map((h) => h.seq));
    // the killed relay comes back and serves again
    await startRelayProcess(victim, 1);
  }, 90_000);

  it('a kick on one relay ends the participant’s connection on another, and rekeys the members on every relay', async () => {
    const target = relays[2] as RelayProc;
    /** A raw connection of `participantId` to `relay`, authenticated and joined to kick-1. */
    const join = async (relay: RelayProc, participantId: string, role: 'visitor' | 'agent') => {
      const ws = new WebSocket(`ws://127.0.0.1:${relay.port}`);
      const frames: { type: string; code?: string }[] = [];
      ws.on('message', (d) =>
        frames.push(JSON.parse(String(d)) as { type: string; code?: string }),
      );
      const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
      await new Promise((resolve) => ws.once('open', resolve));
      ws.send(
        JSON.stringify({
          v: 1,
          type: 'auth',
          token: await mintToken(secret, {
            contactId: 'kick-1',
            participantId,
            role,
            ttlSeconds: 600,
          }),
        }),
      );
      await until(() => frames.some((f) => f.type === 'ready'), 10_000, 'ready');
      ws.send(JSON.stringify({ v: 1, type: 'join', since: 0 }));
      await until(() => frames.some((f) => f.type === 'joined'), 10_000, 'joined');
      return { ws, frames, closed };
    };
    const { ws, frames, closed } = await join(target, 'bad', 'visitor');
    // Members who stay: one on relay C (relays[2], with the kicked one) and one on relays[1].
    const member = await join(target, 'good', 'agent');
    const other = await join(relays[1] as RelayProc, 'other', 'agent');

    const admin = deriveAdminKey(secret);
    const res = await fetch(
      `http://127.0.0.1:${(relays[0] as RelayProc).port}/admin/v1/contacts/kick-1/kick`,
      {
        method: 'POST',
        headers: {
          authorization: `Bearer ${admin.id}:${Buffer.from(admin.secret).toString('base64url')}`,
          'content-type': 'application/json',
        },
        body: JSON.stringify({ participantId: 'bad' }),
      },
    );
    expect(res.status).toBe(200);
    expect(await closed).toBe(4403);
    expect(frames.some((f) => f.type === 'error' && f.code === 'FORBIDDEN')).toBe(true);
    // The kick was made on relays[0], which has no connection of kick-1: the rekey frame came
    // through the fan-out's control channel.
    await until(() => member.frames.some((f) => f.type === 'rekey'), 15_000, 'rekey on relay C');
    await until(() => other.frames.some((f) => f.type === 'rekey'), 15_000, 'rekey on relay B');
    expect(member.frames.filter((f) => f.type === 'rekey')).toHaveLength(1);
    expect(member.ws.readyState).toBe(WebSocket.OPEN);
    expect(frames.some((f) => f.type === 'rekey')).toBe(false);
    member.ws.close();
    other.ws.close();
    ws.close();
  }, 60_000);

  afterAll(() => {
    for (const c of clients) c.close();
  });
});
