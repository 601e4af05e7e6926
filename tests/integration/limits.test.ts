/**
 * The key service against anonymous visitors (issue 13 item 9), over real sockets on 127.0.0.1
 * with the relay in the same process, as `latchkey start` runs them: 1,000 half-sent requests
 * from one IP are capped and timed out while the relay keeps serving and another address is
 * served; one token's burst of key requests gets 429 with Retry-After while another token is
 * served. Limits are small and timeouts short, set through the LATCHKEY_KEYS_* environment.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { openKeyService } from '@latchkey/keyd';
import { ENVELOPE_ALG, ENVELOPE_VERSION, KEYS_PATHS } from '@latchkey/protocol';
import { startRelay } from '@latchkey/relay-app';
import { mintToken } from '@latchkey/tokens';

const ENV = {
  LATCHKEY_KEYS_MAX_CONNECTIONS_PER_IP: '20',
  LATCHKEY_KEYS_HEADERS_TIMEOUT_MS: '1000',
  LATCHKEY_KEYS_REQUEST_TIMEOUT_MS: '2000',
  LATCHKEY_KEYS_IDLE_TIMEOUT_MS: '2000',
  LATCHKEY_KEYS_RATE_PER_IP: '1000/1000',
  LATCHKEY_KEYS_RATE_PER_PARTICIPANT: '1/5',
};

let dir: string;
const secret = crypto.getRandomValues(new Uint8Array(32));
let keys: Awaited<ReturnType<typeof openKeyService>>;
let relay: Awaited<ReturnType<typeof startRelay>>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'latchkey-limits-'));
  Object.assign(process.env, ENV);
  try {
    keys = await openKeyService({
      dataDir: dir,
      host: '127.0.0.1',
      port: 0,
      apiSecret: secret,
      masterKey: crypto.getRandomValues(new Uint8Array(32)),
    });
  } finally {
    for (const k of Object.keys(ENV)) Reflect.deleteProperty(process.env, k);
  }
  relay = await startRelay({ dataDir: dir, host: '127.0.0.1', port: 0, apiSecret: secret });
});

afterAll(async () => {
  await relay?.close();
  await keys?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Resolves once `cond` holds (checked every 20 ms), failing after `ms` with `what()`. */
async function until(cond: () => boolean, ms: number, what: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what()}`);
    await new Promise<void>((r) => setTimeout(r, 20));
  }
}

/** auth -> ready -> send -> ack on the relay, with a schema-valid (never opened) envelope. */
async function relayRoundTrip(): Promise<number> {
  const b64 = (n: number): string => randomBytes(n).toString('base64url');
  const token = await mintToken(secret, {
    contactId: 'busy',
    participantId: 'v1',
    role: 'visitor',
    ttlSeconds: 600,
  });
  const ws = new WebSocket(relay.url);
  try {
    return await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('relay did not ack')), 10_000);
      ws.on('error', reject);
      ws.on('open', () => ws.send(JSON.stringify({ v: 1, type: 'auth', token })));
      ws.on('message', (d) => {
        const f = JSON.parse(String(d)) as { type: string; seq?: number };
        if (f.type === 'ready') {
          const envelope = {
            v: ENVELOPE_VERSION,
            alg: ENVELOPE_ALG,
            contactId: 'busy',
            epoch: 0,
            senderId: 'v1',
            msgId: b64(16),
            sentAt: Date.now(),
            ctr: 1,
            prev: b64(32),
            seenSeq: 0,
            seenHash: b64(32),
            nonce: b64(12),
            ciphertext: b64(40),
            sig: b64(64),
            cert: { body: b64(60), sig: b64(64) },
          };
          ws.send(JSON.stringify({ v: 1, type: 'send', envelope }));
        } else if (f.type === 'ack') {
          clearTimeout(timer);
          resolve(f.seq ?? 0);
        } else if (f.type === 'error') reject(new Error(JSON.stringify(f)));
      });
    });
  } finally {
    ws.terminate();
  }
}

/** GET /v1/health from another loopback address. */
function healthFrom(localAddress: string): Promise<number> {
  const u = new URL(keys.url);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path: KEYS_PATHS.health,
        localAddress,
        agent: false,
        timeout: 5000,
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('timeout', () => req.destroy(new Error('health request timed out')));
    req.on('error', reject);
    req.end();
  });
}

describe('key service limits, relay in the same process', () => {
  it('1,000 half-sent requests from one IP are capped and timed out; the relay and another address are served', async () => {
    const u = new URL(keys.url);
    const sockets: Socket[] = [];
    let closed = 0;
    for (let i = 0; i < 1000; i++) {
      const s = connect({ host: u.hostname, port: Number(u.port) });
      s.on('error', () => undefined);
      s.on('close', () => closed++);
      s.resume(); // reads what the server answers (408), so its FIN is seen
      // Headers never finished: no blank line, ever.
      s.write(
        `POST ${KEYS_PATHS.contactKey} HTTP/1.1\r\nHost: ${u.host}\r\nAuthorization: Bearer `,
      );
      sockets.push(s);
    }
    try {
      // Beyond the per-IP cap, sockets are closed at once.
      await until(
        () => closed >= 1000 - 20,
        15_000,
        () => `${closed} of 1000 half-sent connections closed by the server`,
      );
      // The relay of the same process keeps serving, and so does the key service for others.
      expect(await relayRoundTrip()).toBeGreaterThan(0);
      expect(await healthFrom('127.0.0.2')).toBe(200);
      // The rest are cut at the header timeout.
      await until(
        () => closed === 1000,
        15_000,
        () => `${closed} of 1000 half-sent connections closed by the server`,
      );
      expect(await relayRoundTrip()).toBeGreaterThan(0);
    } finally {
      for (const s of sockets) s.destroy();
    }
  }, 60_000);

  it("one token's burst of key requests gets 429 with Retry-After while another token is served", async () => {
    const tokenA = await mintToken(secret, {
      contactId: 'c-a',
      participantId: 'va',
      role: 'visitor',
      ttlSeconds: 600,
    });
    const tokenB = await mintToken(secret, {
      contactId: 'c-b',
      participantId: 'vb',
      role: 'visitor',
      ttlSeconds: 600,
    });
    const ask = (t: string) =>
      fetch(`${keys.url}${KEYS_PATHS.epochStatement}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${t}` },
      });
    const burst = await Promise.all(Array.from({ length: 15 }, () => ask(tokenA)));
    const limited = burst.filter((r) => r.status === 429);
    expect(limited.length).toBeGreaterThanOrEqual(15 - 6);
    for (const r of limited) {
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(await r.json()).toMatchObject({ error: { code: 'RATE_LIMITED' } });
    }
    // The first answers (before the bucket ran dry) are what a served request gets here.
    const first = burst[0]!;
    expect(first.status).not.toBe(429);
    const served = await ask(tokenB);
    expect(served.status).toBe(first.status);
  }, 30_000);
});
