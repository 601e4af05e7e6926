/**
 * startRelay serves the relay protocol and stores under the data directory; config parsing.
 * This app depends on neither `ws` nor `@latchkey/tokens`, so the test speaks RFC 6455 over a
 * raw upgraded socket and signs its HS256 token (RFC 7515) with node:crypto.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AUDIENCE_KEYS, AUDIENCE_RELAY, ENVELOPE_ALG, TOKEN_ISSUER } from '@latchkey/protocol';
import { SqliteMessageStore } from '@latchkey/relay';
import { ConfigError, DEFAULT_RELAY_PORT, loadConfig, startRelay } from '../src/index.ts';

const secret = new Uint8Array(randomBytes(32));
const b64 = (n: number): string => randomBytes(n).toString('base64url');
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'latchkey-relay-app-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function hs256(claims: object): string {
  const part = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

/** A minimal RFC 6455 text-frame client: enough for a few small frames. */
async function connect(url: string): Promise<{
  send(o: object): void;
  next(): Promise<{ type: string; [k: string]: unknown }>;
  end(): void;
}> {
  const u = new URL(url);
  const socket = await new Promise<Socket>((resolve, reject) => {
    const req = request({
      host: u.hostname,
      port: u.port,
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
      },
    });
    req.on('upgrade', (_res, s: Socket) => resolve(s));
    req.on('response', (res) => reject(new Error(`no upgrade: HTTP ${res.statusCode}`)));
    req.on('error', reject);
    req.end();
  });
  let buf = Buffer.alloc(0);
  const queue: string[] = [];
  let wake: (() => void) | undefined;
  socket.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      if (buf.length < 2) return;
      let len = (buf[1] as number) & 0x7f;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        off = 4;
      }
      if (buf.length < off + len) return;
      if (((buf[0] as number) & 0x0f) === 1)
        queue.push(buf.subarray(off, off + len).toString('utf8'));
      buf = buf.subarray(off + len);
      wake?.();
    }
  });
  return {
    send(o) {
      const payload = Buffer.from(JSON.stringify(o));
      const mask = randomBytes(4);
      const head =
        payload.length < 126
          ? Buffer.from([0x81, 0x80 | payload.length])
          : Buffer.from([0x81, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
      socket.write(Buffer.concat([head, mask, payload.map((b, i) => b ^ (mask[i % 4] as number))]));
    },
    async next() {
      const deadline = Date.now() + 3000;
      while (queue.length === 0) {
        if (Date.now() > deadline) throw new Error('no frame');
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 50);
        });
      }
      return JSON.parse(queue.shift() as string) as { type: string };
    },
    end: () => socket.destroy(),
  };
}

describe('startRelay', () => {
  it('serves the relay protocol and stores under <dataDir>/relay/messages.db (dir 0700)', async () => {
    const relay = await startRelay({ dataDir: dir, host: '127.0.0.1', port: 0, apiSecret: secret });
    expect(relay.url).toBe(`ws://127.0.0.1:${relay.port}`);
    const now = Math.floor(Date.now() / 1000);
    const token = hs256({
      iss: TOKEN_ISSUER,
      aud: [AUDIENCE_RELAY, AUDIENCE_KEYS],
      sub: 'v1',
      cid: 'c1',
      role: 'visitor',
      iat: now,
      exp: now + 600,
      jti: b64(16),
    });
    const c = await connect(relay.url);
    c.send({ v: 1, type: 'auth', token });
    expect(await c.next()).toMatchObject({ type: 'ready', contactId: 'c1', head: 0 });
    const envelope = {
      v: 2,
      alg: ENVELOPE_ALG,
      contactId: 'c1',
      epoch: 0,
      senderId: 'v1',
      msgId: b64(16),
      sentAt: Date.now(),
      ctr: 1,
      prev: b64(32),
      seenSeq: 0,
      seenHash: b64(32),
      nonce: b64(12),
      ciphertext: b64(24),
      sig: b64(64),
      cert: { body: b64(30), sig: b64(64) },
    };
    c.send({ v: 1, type: 'send', envelope });
    expect(await c.next()).toEqual({
      v: 1,
      type: 'ack',
      msgId: envelope.msgId,
      seq: 1,
      duplicate: false,
    });
    c.end();
    await relay.close();
    await relay.close(); // idempotent

    const relayDir = join(dir, 'relay');
    if (process.platform !== 'win32') expect((await stat(relayDir)).mode & 0o777).toBe(0o700);
    const store = new SqliteMessageStore({ path: join(relayDir, 'messages.db') });
    expect(await store.head('c1')).toBe(1);
    expect((await store.history('c1', 0, 10)).envelopes[0]).toEqual({ ...envelope, seq: 1 });
    await store.close();
  });

  it('restarts on the same port and data', async () => {
    const a = await startRelay({ dataDir: dir, host: '127.0.0.1', port: 0, apiSecret: secret });
    await a.close();
    const b = await startRelay({
      dataDir: dir,
      host: '127.0.0.1',
      port: a.port,
      apiSecret: secret,
    });
    expect(b.port).toBe(a.port);
    await b.close();
  });

  it('refuses a short API secret', async () => {
    await expect(
      startRelay({ dataDir: dir, host: '127.0.0.1', port: 0, apiSecret: new Uint8Array(8) }),
    ).rejects.toThrow(RangeError);
  });
});

describe('loadConfig', () => {
  it('reads defaults, environment and flags (flags win)', async () => {
    const s = Buffer.from(secret).toString('base64url');
    const env = { LATCHKEY_API_SECRET: s, LATCHKEY_DATA_DIR: dir };
    expect(await loadConfig([], env)).toMatchObject({
      dataDir: dir,
      host: '127.0.0.1',
      port: DEFAULT_RELAY_PORT,
      apiSecret: secret,
      secretSource: 'env',
    });
    const c = await loadConfig(['--port', '0', '--host', '::1'], {
      ...env,
      LATCHKEY_RELAY_PORT: '9000',
      LATCHKEY_RELAY_HOST: '0.0.0.0',
    });
    expect(c).toMatchObject({ port: 0, host: '::1' });
    expect(
      await loadConfig([], { ...env, LATCHKEY_API_SECRET: Buffer.from(secret).toString('hex') }),
    ).toMatchObject({ apiSecret: secret });
  });

  it('reads <data>/api-secret when the environment has none, owner-only', async () => {
    const file = join(dir, 'api-secret');
    await expect(loadConfig([], { LATCHKEY_DATA_DIR: dir })).rejects.toThrow(/no API secret/);
    await writeFile(file, secret, { mode: 0o600 });
    expect(await loadConfig([], { LATCHKEY_DATA_DIR: dir })).toMatchObject({
      apiSecret: secret,
      secretSource: 'file',
    });
    if (process.platform !== 'win32') {
      await chmod(file, 0o644);
      await expect(loadConfig([], { LATCHKEY_DATA_DIR: dir })).rejects.toThrow(/owner only/);
    }
  });

  it('rejects invalid values without echoing secrets', async () => {
    const env = {
      LATCHKEY_API_SECRET: Buffer.from(secret).toString('base64url'),
      LATCHKEY_DATA_DIR: dir,
    };
    for (const [argv, e] of [
      [['--port', '70000'], env],
      [['--port', 'x'], env],
      [['--host', 'bad host!'], env],
      [['--bogus'], env],
      [[], { ...env, LATCHKEY_RELAY_PORT: '-1' }],
      [[], { ...env, LATCHKEY_API_SECRET: 'c2hvcnQ' }],
      [[], { ...env, LATCHKEY_API_SECRET: 'not base64url!!' }],
    ] as const) {
      const err = await loadConfig(argv, e).then(
        () => null,
        (x: unknown) => x,
      );
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).not.toContain(e.LATCHKEY_API_SECRET);
    }
  });
});
