/**
 * Graceful shutdown (docs/guarantees.md "Graceful shutdown"): a relay in a child process gets
 * SIGTERM in the middle of a steady stream of sends. It exits 0 after printing `relay: stopped`,
 * every send it acknowledged is stored, its clients see close 1001, and they resume on a
 * restarted relay with no message lost or duplicated.
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

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'latchkey-shutdown-'));
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
  await stopRelay(relay);
  await keys.close();
  await rm(dir, { recursive: true, force: true });
});

/** Close codes seen by every client socket. */
const closeCodes: number[] = [];
class RecordingWebSocket extends WebSocket {
  constructor(url: string) {
    super(url);
    this.on('close', (code) => closeCodes.push(code));
  }
}

async function client(
  participantId: string,
  role: 'visitor' | 'agent' = 'visitor',
  live = true,
): Promise<LatchkeyClient> {
  return LatchkeyClient.connect({
    relayUrl: `ws://127.0.0.1:${port}`,
    keysUrl: keys.url,
    token: await mintToken(secret, {
      contactId: 'shutdown-1',
      participantId,
      role,
      ttlSeconds: 600,
    }),
    WebSocket: RecordingWebSocket as unknown as WebSocketConstructor,
    backoff: { minMs: 20, maxMs: 200 },
    live,
  });
}

describe('relay stopped with SIGTERM under load', () => {
  it('exits 0, keeps every acked send, closes clients with 1001; they resume on a restarted relay without loss or duplicate', async () => {
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

    await until(() => acked.size >= 60, 10_000, 'a steady stream');
    const ackedAtSigterm = acked.size;
    expect(await stopRelay(relay, 'SIGTERM')).toBe(0);
    expect(relay?.stdout).toContain('relay: stopped');
    const ackedAtExit = new Map(acked);
    expect(closeCodes.filter((c) => c === 1001).length).toBeGreaterThanOrEqual(4);

    await new Promise((r) => setTimeout(r, 200));
    await startRelayProcess();
    await until(() => acked.size > ackedAtExit.size + 30, 15_000, 'the stream to resume');
    stop = true;
    await Promise.all(loops);

    const check = await client('auditor', 'agent', false);
    const history = await check.history(0);
    check.close();
    expect(history.every((h) => h.ok)).toBe(true);
    expect(history.map((h) => h.seq)).toEqual(
      Array.from({ length: history.length }, (_, i) => i + 1),
    );
    const byMsgId = new Map(history.map((h) => [h.msgId, h]));
    expect(byMsgId.size).toBe(history.length);
    // Everything acked before the relay exited is stored, at the seq it was acked with.
    for (const [msgId, a] of ackedAtExit) expect(byMsgId.get(msgId)?.seq).toBe(a.seq);
    for (const [msgId, a] of acked) expect(byMsgId.get(msgId)?.seq).toBe(a.seq);
    for (const s of senders) {
      const ns = history
        .filter((h) => h.senderId === s.participantId)
        .map((h) => (h.ok ? Number(h.text.split('#')[1]) : -1));
      expect(ns).toEqual(Array.from({ length: ns.length }, (_, i) => i)); // no gap, no duplicate
    }
    await until(() => seen.length === history.length, 10_000, 'the reader to catch up');
    expect(seen.map((m) => m.seq)).toEqual(history.map((h) => h.seq));
    console.log(
      `shutdown: ${ackedAtSigterm} acked at SIGTERM, ${ackedAtExit.size} at exit, ${history.length} stored in all`,
    );
    for (const c of [...senders, reader]) c.close();
  }, 60_000);
});
