/**
 * Crash safety (docs/guarantees.md): a relay in a child process takes a steady stream of sends
 * from several clients and is killed with SIGKILL at random points, several times. After each
 * restart every acknowledged message is stored exactly once, in order, and the clients resume
 * without gaps or duplicates.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LatchkeyClient, type ChatMessage, type WebSocketConstructor } from '@latchkey/client';
import { openKeyService } from '@latchkey/keyd';
import { mintToken } from '@latchkey/tokens';
import { until } from './harness.ts';
import { spawnRelay, stopRelay, freePort, type RelayProcess } from './relay-process.ts';

let dir: string;
let keys: Awaited<ReturnType<typeof openKeyService>>;
let relay: RelayProcess | undefined;
let port: number;
const secret = crypto.getRandomValues(new Uint8Array(32));

async function startRelayProcess(): Promise<void> {
  relay = await spawnRelay({ dataDir: dir, port, secret });
}

async function killRelay(): Promise<void> {
  await stopRelay(relay, 'SIGKILL');
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'latchkey-crash-'));
  keys = await openKeyService({
    dataDir: dir,
    host: '127.0.0.1',
    port: 0,
    apiSecret: secret,
    masterKey: crypto.getRandomValues(new Uint8Array(32)),
  });
  port = await freePort();
  await startRelayProcess();
}, 30_000);

afterAll(async () => {
  await killRelay();
  await keys.close();
  await rm(dir, { recursive: true, force: true });
});

async function client(
  participantId: string,
  role: 'visitor' | 'agent' = 'visitor',
  live = true,
): Promise<LatchkeyClient> {
  return LatchkeyClient.connect({
    relayUrl: `ws://127.0.0.1:${port}`,
    keysUrl: keys.url,
    token: await mintToken(secret, { contactId: 'crash-1', participantId, role, ttlSeconds: 600 }),
    WebSocket: WebSocket as unknown as WebSocketConstructor,
    backoff: { minMs: 20, maxMs: 200 },
    live,
  });
}

describe('relay killed with SIGKILL under load', () => {
  it('loses no acknowledged message and duplicates none, across several crashes', async () => {
    const senders = await Promise.all([client('v1'), client('a1', 'agent'), client('v2')]);
    const reader = await client('reader', 'agent');
    const seen: ChatMessage[] = [];
    reader.on('message', (m) => seen.push(m));

    const acked = new Map<string, { seq: number; sender: string; n: number }>();
    let stop = false;
    const loops = senders.map(async (c) => {
      for (let n = 0; !stop; n++) {
        const r = await c.send(`${c.participantId} #${n}`);
        acked.set(r.msgId, { seq: r.seq, sender: c.participantId, n });
      }
    });

    for (let round = 0; round < 3; round++) {
      await new Promise((r) => setTimeout(r, 150 + Math.random() * 400));
      await killRelay();
      await new Promise((r) => setTimeout(r, 50 + Math.random() * 150));
      await startRelayProcess();
    }
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await Promise.all(loops);
    expect(acked.size).toBeGreaterThan(30);

    // Every acked message exactly once, at its acked seq, seqs gap-free.
    const check = await client('auditor', 'agent', false);
    const history = await check.history(0);
    check.close();
    expect(history.every((h) => h.ok)).toBe(true);
    expect(history.map((h) => h.seq)).toEqual(
      Array.from({ length: history.length }, (_, i) => i + 1),
    );
    const byMsgId = new Map(history.map((h) => [h.msgId, h]));
    expect(byMsgId.size).toBe(history.length);
    for (const [msgId, a] of acked) expect(byMsgId.get(msgId)?.seq).toBe(a.seq);
    // Each sender's messages are stored in the order it sent them.
    for (const s of senders) {
      const ns = history
        .filter((h) => h.senderId === s.participantId)
        .map((h) => (h.ok ? Number(h.text.split('#')[1]) : -1));
      expect(ns).toEqual([...ns].sort((x, y) => x - y));
    }

    // The live reader resumed through every crash: each message once, in seq order.
    await until(() => seen.length === history.length, 10_000, 'the reader to catch up');
    expect(seen.map((m) => m.seq)).toEqual(history.map((h) => h.seq));
    for (const c of [...senders, reader]) c.close();
  }, 60_000);
});
