/**
 * Network fuzzer: tens of thousands of malformed, truncated, oversized, binary and
 * out-of-order frames, from unauthenticated and authenticated connections, while two honest
 * participants chat. The relay keeps serving them, answers the rest with typed errors or a
 * close, and its connection count and memory come back down.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRelay, type Relay } from '../src/index.ts';
import { SECRET, TestClient, fakeEnvelope, sleep, token } from './_helpers.ts';

let dir: string;
let relay: Relay;
let url: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'latchkey-fuzz-'));
  // Generous rate limits: the fuzzer should reach the parser, not bounce off the limiter.
  relay = createRelay({
    store: { path: join(dir, 'messages.db') },
    apiSecret: SECRET,
    rateLimit: { perSecond: 100_000, burst: 100_000 },
    admission: {
      perIpRateLimit: { perSecond: 1_000_000, burst: 1_000_000 },
      perIpConnectRate: { perSecond: 1_000_000, burst: 1_000_000 },
      maxConnectionsPerIp: 10_000,
    },
  });
  ({ url } = await relay.listen({ host: '127.0.0.1', port: 0 }));
});
afterAll(async () => {
  await relay.close();
  await rm(dir, { recursive: true, force: true });
});

/** One hostile frame: garbage text, JSON of the wrong shape, truncations, binary, oversize. */
function hostileFrames(valid: string[]): fc.Arbitrary<string | Buffer> {
  return fc.oneof(
    fc.string({ maxLength: 300 }),
    fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v) ?? 'null'),
    fc.constantFrom(...valid).chain((t) => fc.nat({ max: t.length }).map((n) => t.slice(0, n))),
    fc.constantFrom(...valid).map((t) => t.replace(/"v":1/, '"v":"1"')),
    fc
      .record({
        v: fc.constant(1),
        type: fc.constantFrom('send', 'join', 'history', 'auth', 'ping', 'deliver', '__proto__'),
        x: fc.anything(),
      })
      .map((o) => JSON.stringify(o)),
    fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
    fc.constant('{"v":1,"type":"ping","pad":"' + 'A'.repeat(70_000) + '"}'),
    fc.constant('['.repeat(5000)),
  );
}

/** Sends `frames` on a fresh socket (optionally authenticated first); resolves when done or closed. */
function blast(frames: Array<string | Buffer>, auth?: string): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url);
    let sent = 0;
    ws.on('error', () => undefined);
    ws.on('close', () => resolve(sent));
    ws.on('open', () => {
      if (auth) ws.send(JSON.stringify({ v: 1, type: 'auth', token: auth }));
      for (const f of frames) {
        if (ws.readyState !== WebSocket.OPEN) break;
        ws.send(f);
        sent++;
      }
      setTimeout(() => ws.terminate(), 200);
    });
  });
}

describe('relay under a network fuzzer', () => {
  it('keeps serving honest clients through 20,000+ hostile frames', async () => {
    const visitor = await TestClient.as(url, 'fuzz-c', 'v1');
    const agent = await TestClient.as(url, 'fuzz-c', 'a1', 'agent');
    agent.send({ v: 1, type: 'join', since: 0 });
    await agent.next('joined');

    const valid = [
      JSON.stringify({ v: 1, type: 'send', envelope: fakeEnvelope('fuzz-c', 'v1') }),
      JSON.stringify({ v: 1, type: 'join', since: 0 }),
      JSON.stringify({ v: 1, type: 'history', id: 'h1', since: 0 }),
      JSON.stringify({ v: 1, type: 'auth', token: 'x.y.z' }),
    ];
    const hostile = hostileFrames(valid);
    const attackerToken = await token('fuzz-other', 'mallory');
    const before = process.memoryUsage().rss;

    let total = 0;
    let delivered = 0;
    for (let wave = 0; wave < 25; wave++) {
      const batches = Array.from({ length: 8 }, (_, i) =>
        blast(fc.sample(hostile, 110), i % 2 ? attackerToken : undefined),
      );
      // The honest pair keeps talking during every wave.
      const e = fakeEnvelope('fuzz-c', 'v1');
      visitor.sendEnvelope(e);
      const ack = await visitor.next('ack', 5000);
      expect(ack.msgId).toBe(e.msgId);
      expect((await agent.next('deliver', 5000)).envelope.msgId).toBe(e.msgId);
      delivered++;
      total += (await Promise.all(batches)).reduce((a, b) => a + b, 0);
    }
    expect(total).toBeGreaterThan(20_000);
    expect(delivered).toBe(25);

    // Every hostile connection is gone; memory did not grow without bound.
    for (let i = 0; i < 100 && relay.connections > 2; i++) await sleep(20);
    expect(relay.connections).toBe(2);
    const grown = process.memoryUsage().rss - before;
    expect(grown).toBeLessThan(256 * 1024 * 1024);

    // The store holds exactly the honest messages of the honest contact.
    const page = await relay.store.history('fuzz-c', 0, 100);
    expect(page.envelopes.map((x) => x.seq)).toEqual(
      Array.from({ length: page.envelopes.length }, (_, i) => i + 1),
    );
    expect(page.envelopes).toHaveLength(25);
    expect(page.envelopes.every((x) => x.contactId === 'fuzz-c' && x.senderId === 'v1')).toBe(true);
    visitor.close();
    agent.close();
  }, 60_000);
});
