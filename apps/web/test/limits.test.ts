/**
 * The web server against anonymous visitors (issue 13 item 9), over real sockets on 127.0.0.1
 * with the relay in the same process, as `latchkey start` runs them: 1,000 half-sent requests
 * from one IP are capped and timed out while the relay keeps serving (its /readyz queries its store) and another address gets
 * pages; a burst of requests from one IP gets 429 with Retry-After while another IP is served.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRelay } from '@latchkey/relay-app';
import { startWeb, type RunningWeb } from '../src/index.ts';

let dir: string;
const secret = crypto.getRandomValues(new Uint8Array(32));
let relay: Awaited<ReturnType<typeof startRelay>>;
let web: RunningWeb;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'latchkey-web-limits-'));
  relay = await startRelay({ dataDir: dir, host: '127.0.0.1', port: 0, apiSecret: secret });
  web = await startWeb({
    host: '127.0.0.1',
    port: 0,
    apiSecret: secret,
    relayUrl: relay.url,
    keysUrl: 'http://127.0.0.1:9',
    serviceKey: 'A'.repeat(43),
    demoBackend: false,
    limits: {
      maxConnectionsPerIp: 20,
      headersTimeoutMs: 1000,
      requestTimeoutMs: 2000,
      idleTimeoutMs: 2000,
      ratePerSecond: 1,
      rateBurst: 10,
    },
  });
}, 120_000);

afterAll(async () => {
  await web?.close();
  await relay?.close();
  await rm(dir, { recursive: true, force: true });
});

async function until(cond: () => boolean, ms: number, what: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what()}`);
    await new Promise<void>((r) => setTimeout(r, 20));
  }
}

/** The relay's readiness (its store answers a query) over HTTP on its own port. */
async function relayReady(): Promise<number> {
  const res = await fetch(`${relay.url.replace(/^ws/, 'http')}/readyz`);
  await res.text();
  return res.status;
}

/** GET `path` from `localAddress`: status and Retry-After. */
function get(
  path: string,
  localAddress: string,
): Promise<{ status: number; retryAfter: string | undefined }> {
  const u = new URL(web.url);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: u.hostname, port: u.port, path, localAddress, agent: false, timeout: 5000 },
      (res) => {
        res.resume();
        const ra = res.headers['retry-after'];
        resolve({ status: res.statusCode ?? 0, retryAfter: Array.isArray(ra) ? ra[0] : ra });
      },
    );
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end();
  });
}

describe('web server limits, relay in the same process', () => {
  it('1,000 half-sent requests from one IP are capped and timed out; the relay and another address are served', async () => {
    const u = new URL(web.url);
    const sockets: Socket[] = [];
    let closed = 0;
    for (let i = 0; i < 1000; i++) {
      const s = connect({ host: u.hostname, port: Number(u.port), localAddress: '127.0.0.3' });
      s.on('error', () => undefined);
      s.on('close', () => closed++);
      s.resume(); // reads what the server answers (408), so its FIN is seen
      s.write(`GET / HTTP/1.1\r\nHost: ${u.host}\r\nX-Slow: `);
      sockets.push(s);
    }
    try {
      await until(
        () => closed >= 1000 - 20,
        15_000,
        () => `${closed} of 1000 half-sent connections closed by the server`,
      );
      expect(await relayReady()).toBe(200);
      expect((await get('/', '127.0.0.4')).status).toBe(200);
      await until(
        () => closed === 1000,
        15_000,
        () => `${closed} of 1000 half-sent connections closed by the server`,
      );
      expect(await relayReady()).toBe(200);
    } finally {
      for (const s of sockets) s.destroy();
    }
  }, 60_000);

  it('a burst from one IP gets 429 with Retry-After while another IP is served', async () => {
    const burst = await Promise.all(Array.from({ length: 20 }, () => get('/', '127.0.0.5')));
    const limited = burst.filter((r) => r.status === 429);
    expect(limited.length).toBeGreaterThanOrEqual(20 - 11);
    for (const r of limited) expect(Number(r.retryAfter)).toBeGreaterThanOrEqual(1);
    expect((await get('/', '127.0.0.6')).status).toBe(200);
  }, 30_000);
});
