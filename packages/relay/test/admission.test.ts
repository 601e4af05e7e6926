/**
 * Admission control over a real relay on 127.0.0.1: origin and IP allowlists, the cap on
 * connections per IP, and rate limits that stop a flooding connection without touching others.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  createRelay,
  parseIpAllowlist,
  ipAllowed,
  type Relay,
  type RelayOptions,
} from '../src/index.ts';
import { SECRET, TestClient, sleep } from './_helpers.ts';

let dir: string;
let relay: Relay | undefined;
let url: string;
const sockets: WebSocket[] = [];
const clients: TestClient[] = [];

async function start(over: Partial<RelayOptions> = {}): Promise<void> {
  relay = createRelay({ store: { path: join(dir, 'messages.db') }, apiSecret: SECRET, ...over });
  ({ url } = await relay.listen({ host: '127.0.0.1', port: 0 }));
}

/** Opens a raw socket; resolves 'open' or the HTTP status of a refused upgrade. */
function attempt(headers: Record<string, string> = {}): Promise<'open' | number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    sockets.push(ws);
    ws.once('open', () => resolve('open'));
    ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.once('error', (err) => reject(err));
  });
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'latchkey-admission-'));
});
afterEach(async () => {
  for (const ws of sockets.splice(0)) ws.terminate();
  for (const c of clients.splice(0)) c.ws.terminate();
  await relay?.close();
  relay = undefined;
  await rm(dir, { recursive: true, force: true });
});

describe('admission', () => {
  it('allows only listed browser origins; clients without an Origin are not affected', async () => {
    await start({ admission: { allowedOrigins: ['https://chat.example.com'] } });
    expect(await attempt({ origin: 'https://chat.example.com' })).toBe('open');
    expect(await attempt({ origin: 'https://CHAT.example.com/' })).toBe('open');
    expect(await attempt({ origin: 'https://evil.example' })).toBe(403);
    expect(await attempt({ origin: 'null' })).toBe(403);
    expect(await attempt()).toBe('open');
  });

  it('applies an IP/CIDR allowlist before the handshake', async () => {
    await start({ admission: { ipAllowlist: ['10.0.0.0/8', '192.168.1.7'] } });
    expect(await attempt()).toBe(403);
    await relay?.close();
    await start({ admission: { ipAllowlist: ['10.0.0.0/8', '127.0.0.0/8'] } });
    expect(await attempt()).toBe('open');
  });

  it('caps connections per IP and frees the slot when one closes', async () => {
    await start({ admission: { maxConnectionsPerIp: 3 } });
    for (let i = 0; i < 3; i++) expect(await attempt()).toBe('open');
    expect(await attempt()).toBe(429);
    const first = sockets[0]!;
    await new Promise<void>((r) => {
      first.once('close', () => r());
      first.close();
    });
    await sleep(50);
    expect(await attempt()).toBe('open');
  });

  it('stops a flooding connection without slowing another', async () => {
    await start({ rateLimit: { perSecond: 50, burst: 50 } });
    const flooder = await TestClient.as(url, 'c-flood', 'v1');
    const calm = await TestClient.as(url, 'c-flood', 'a1', 'agent');
    clients.push(flooder, calm);
    for (let i = 0; i < 400; i++) flooder.send({ v: 1, type: 'ping', id: `f${i}` });
    for (let i = 0; i < 20; i++) calm.send({ v: 1, type: 'ping', id: `c${i}` });
    const pongs = await calm.take('pong', 20);
    expect(pongs.map((p) => p.id)).toEqual(Array.from({ length: 20 }, (_, i) => `c${i}`));
    await sleep(100);
    expect(calm.log.filter((f) => f.type === 'error')).toEqual([]);
    const limited = flooder.log.filter((f) => f.type === 'error' && f.code === 'RATE_LIMITED');
    expect(limited.length).toBeGreaterThanOrEqual(100);
    expect(flooder.log.filter((f) => f.type === 'pong').length).toBeLessThanOrEqual(60);
    // Sustained abuse ends the flooding connection (policy violation), not the calm one.
    expect((await flooder.closed).code).toBe(1008);
    calm.send({ v: 1, type: 'ping', id: 'after' });
    expect((await calm.next('pong')).id).toBe('after');
  });

  it('parses allowlists strictly', () => {
    const list = parseIpAllowlist(['10.0.0.0/8', '::1', '2001:db8::/32']);
    expect(ipAllowed(list, '10.1.2.3')).toBe(true);
    expect(ipAllowed(list, '11.0.0.1')).toBe(false);
    expect(ipAllowed(list, '::1')).toBe(true);
    expect(ipAllowed(list, '2001:db8::5')).toBe(true);
    expect(ipAllowed(list, 'not-an-ip')).toBe(false);
    for (const bad of ['10.0.0.0/33', 'example.com', '10.0.0.0/8/1', '', '1.2.3.4/x']) {
      expect(() => parseIpAllowlist([bad])).toThrow(RangeError);
    }
  });
});
