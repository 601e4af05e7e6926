/**
 * Backpressure (docs/guarantees.md "Backpressure"): a reader that stops reading (its socket
 * paused) while a sender sends a lot cannot make the relay queue without bound. The relay's
 * outgoing queue for it (measured on the server-side socket: bytes Node holds that the kernel
 * has not taken) stays under the 8 MiB limit plus one frame; the stuck reader is disconnected
 * (1013), a healthy reader of the same contact keeps receiving, and once the stuck one reads
 * again it reconnects and catches up from history with every message once, in order.
 */
import { createServer, type Server } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LatchkeyClient, type ChatMessage, type WebSocketConstructor } from '@latchkey/client';
import { openKeyService } from '@latchkey/keyd';
import { createRelay, type Relay, type RelayLogEvent } from '@latchkey/relay';
import { mintToken } from '@latchkey/tokens';
import { until } from './harness.ts';

const LIMIT = 8 * 1024 * 1024;
const secret = crypto.getRandomValues(new Uint8Array(32));
let dir: string;
let keys: Awaited<ReturnType<typeof openKeyService>>;
let relay: Relay;
let server: Server;
let relayUrl: string;
const events: RelayLogEvent[] = [];
/** Server-side TCP sockets of the relay (what it queues for each client). */
const serverSockets = new Set<Socket>();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'latchkey-backpressure-'));
  keys = await openKeyService({
    dataDir: dir,
    host: '127.0.0.1',
    port: 0,
    apiSecret: secret,
    masterKey: crypto.getRandomValues(new Uint8Array(32)),
  });
  const fast = { perSecond: 100_000, burst: 100_000 };
  relay = createRelay({
    store: { path: join(dir, 'messages.db') },
    apiSecret: secret,
    rateLimit: fast,
    admission: { perIpRateLimit: fast },
    // This test is about the outgoing queue: the sender's own byte rate and quota stay out of it.
    participantByteRate: { perSecond: 1 << 30, burst: 1 << 30 },
    quota: { contactBytes: 1 << 30, participantBytes: 1 << 30 },
    log: (e) => events.push(e),
  });
  server = createServer();
  server.on('connection', (s) => {
    serverSockets.add(s);
    s.once('close', () => serverSockets.delete(s));
  });
  relay.attach(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  relayUrl = `ws://127.0.0.1:${(server.address() as { port: number }).port}`;
});

afterAll(async () => {
  await relay.close();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await keys.close();
  await rm(dir, { recursive: true, force: true });
});

/** A `ws` WebSocket that remembers its instances and the close codes it saw. */
function recordingWebSocket(sockets: WebSocket[], closes: number[]): WebSocketConstructor {
  class Recording extends WebSocket {
    constructor(url: string) {
      super(url);
      sockets.push(this);
      this.on('close', (code) => closes.push(code));
    }
  }
  return Recording as unknown as WebSocketConstructor;
}

async function client(
  participantId: string,
  role: 'visitor' | 'agent',
  WS: WebSocketConstructor,
): Promise<LatchkeyClient> {
  return LatchkeyClient.connect({
    relayUrl,
    keysUrl: keys.url,
    token: await mintToken(secret, { contactId: 'bp-1', participantId, role, ttlSeconds: 600 }),
    WebSocket: WS,
    backoff: { minMs: 20, maxMs: 200 },
  });
}

describe('a reader that stops reading', () => {
  it('is disconnected with the relay queue bounded, then catches up from history: every message once, in order', async () => {
    const stuckSockets: WebSocket[] = [];
    const stuckCloses: number[] = [];
    const stuck = await client('stuck', 'agent', recordingWebSocket(stuckSockets, stuckCloses));
    const healthy = await client('healthy', 'agent', WebSocket as unknown as WebSocketConstructor);
    const sender = await client('visitor', 'visitor', WebSocket as unknown as WebSocketConstructor);
    const seenStuck: ChatMessage[] = [];
    const seenHealthy: ChatMessage[] = [];
    stuck.on('message', (m) => seenStuck.push(m));
    healthy.on('message', (m) => seenHealthy.push(m));

    // Stop reading: the TCP socket is paused, so the kernel buffers fill, then the relay's.
    const paused = (stuckSockets[0] as unknown as { _socket: Socket })._socket;
    paused.pause();
    let maxQueued = 0;
    const sampler = setInterval(() => {
      for (const s of serverSockets) maxQueued = Math.max(maxQueued, s.writableLength);
    }, 2);

    const text = 'x'.repeat(16_000); // ~22 KB per deliver frame
    let sent = 0;
    let bytesOffered = 0;
    const dropped = (): boolean => events.some((e) => e.event === 'slow-consumer');
    while ((!dropped() || bytesOffered < 3 * LIMIT) && sent < 4000) {
      const batch = await Promise.all(
        Array.from({ length: 50 }, (_, i) => sender.send(`${sent + i} ${text}`)),
      );
      sent += batch.length;
      bytesOffered += batch.length * 22_000;
    }
    // A little more after the drop: the stuck reader must get these from history.
    for (let i = 0; i < 20; i++) await sender.send(`${sent++} after the drop`);
    clearInterval(sampler);
    for (const s of serverSockets) maxQueued = Math.max(maxQueued, s.writableLength);

    expect(dropped()).toBe(true);
    expect(bytesOffered).toBeGreaterThan(3 * LIMIT);
    // At most the limit plus the frame that crossed it.
    expect(maxQueued).toBeLessThanOrEqual(LIMIT + 64 * 1024);
    await until(
      () => seenHealthy.length === sent,
      20_000,
      'the healthy reader to receive everything',
    );

    // Reads again: drains what was queued, sees the close, reconnects and resumes from history.
    paused.resume();
    await until(() => seenStuck.length === sent, 30_000, 'the stuck reader to catch up');
    expect(stuckCloses).toContain(1013);
    expect(stuckSockets.length).toBeGreaterThan(1);
    expect(seenStuck.map((m) => m.seq)).toEqual(Array.from({ length: sent }, (_, i) => i + 1));
    // Each message once (sends of one batch are sealed concurrently, so text order is free).
    expect(seenStuck.map((m) => Number(m.text.split(' ')[0])).sort((a, b) => a - b)).toEqual(
      Array.from({ length: sent }, (_, i) => i),
    );
    expect(seenHealthy.map((m) => m.seq)).toEqual(seenStuck.map((m) => m.seq));
    console.log(
      `backpressure: ${sent} messages (${(bytesOffered / 2 ** 20).toFixed(1)} MiB offered to the stuck reader); ` +
        `largest relay queue ${(maxQueued / 2 ** 20).toFixed(2)} MiB (limit ${LIMIT / 2 ** 20} MiB)`,
    );
    for (const c of [stuck, healthy, sender]) c.close();
  }, 90_000);
});
