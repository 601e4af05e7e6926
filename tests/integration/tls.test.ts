/**
 * TLS end to end: relay (wss) and key service (https) with certificates made at test time; the
 * `latchkey` command as the client, trusting the test CA through NODE_EXTRA_CA_CERTS. A wrong
 * name, an expired or an untrusted certificate fails with TLS_FAILED, never a plain fallback.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openKeyService } from '@latchkey/keyd';
import { startRelay } from '@latchkey/relay-app';
import { InsecureListenerError } from '@latchkey/protocol';
import { mintToken } from '@latchkey/tokens';
import { makePki, type TestPki } from './certs.ts';

const BIN = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'apps',
  'cli',
  'bin',
  'latchkey.mjs',
);

function latchkey(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { env: { ...process.env, ...env }, timeout: 30_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
      },
    );
  });
}

let dir: string;
let pki: TestPki;
const secret = crypto.getRandomValues(new Uint8Array(32));
const masterKey = crypto.getRandomValues(new Uint8Array(32));
const closers: Array<() => Promise<void>> = [];

async function stack(name: string, cert: { certFile: string; keyFile: string }) {
  const data = join(dir, name);
  const keys = await openKeyService({
    dataDir: data,
    host: '127.0.0.1',
    port: 0,
    apiSecret: secret,
    masterKey,
    tls: cert,
  });
  const relay = await startRelay({
    dataDir: data,
    host: '127.0.0.1',
    port: 0,
    apiSecret: secret,
    tls: cert,
  });
  closers.push(
    () => relay.close(),
    () => keys.close(),
  );
  return { keys: keys.url, relay: relay.url, keysPort: keys.port, relayPort: relay.port };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'latchkey-tls-'));
  pki = makePki(dir);
});
afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await rm(dir, { recursive: true, force: true });
});

describe('TLS for relay and key service', () => {
  it('chats over wss:// and https:// with a trusted certificate', async () => {
    const s = await stack(
      'good',
      pki.issue('good', { san: 'DNS:localhost,IP:127.0.0.1', days: 1 }),
    );
    expect(s.relay).toMatch(/^wss:\/\//);
    expect(s.keys).toMatch(/^https:\/\//);
    const token = await mintToken(secret, {
      contactId: 'tls-1',
      participantId: 'v1',
      role: 'visitor',
      ttlSeconds: 300,
    });
    const env = { NODE_EXTRA_CA_CERTS: pki.caFile };
    const urls = [
      '--relay',
      `wss://localhost:${s.relayPort}`,
      '--keys',
      `https://localhost:${s.keysPort}`,
    ];
    const sent = await latchkey(['send', '--token', token, ...urls, 'over TLS'], env);
    expect(sent).toMatchObject({ code: 0, stdout: '1\n' });
    const read = await latchkey(['read', '--token', token, ...urls, '--json'], env);
    expect(read.code).toBe(0);
    expect(JSON.parse(read.stdout.trim())).toMatchObject({ seq: 1, text: 'over TLS' });

    // The same servers without trusting the CA: refused, with the reason.
    const untrusted = await latchkey(['send', '--token', token, ...urls, 'x'], {
      NODE_EXTRA_CA_CERTS: '',
    });
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr).toMatch(
      /^error: TLS_FAILED key service: certificate .*(not trusted|untrusted)/,
    );

    // Plain http:// against the TLS port does not silently work.
    const plain = await latchkey(
      [
        'send',
        '--token',
        token,
        '--relay',
        `ws://localhost:${s.relayPort}`,
        '--keys',
        `http://localhost:${s.keysPort}`,
        'x',
      ],
      env,
    );
    expect(plain.code).toBe(1);
  });

  it('refuses a certificate for another name', async () => {
    const s = await stack(
      'wrong-name',
      pki.issue('other', { san: 'DNS:chat.example.com', days: 1 }),
    );
    const token = await mintToken(secret, {
      contactId: 'tls-2',
      participantId: 'v1',
      role: 'visitor',
      ttlSeconds: 300,
    });
    const r = await latchkey(
      [
        'send',
        '--token',
        token,
        '--relay',
        `wss://localhost:${s.relayPort}`,
        '--keys',
        `https://localhost:${s.keysPort}`,
        'x',
      ],
      {
        NODE_EXTRA_CA_CERTS: pki.caFile,
      },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: TLS_FAILED key service: certificate does not name this host/);
  });

  it('refuses an expired certificate, on the key service and on the relay', async () => {
    const expired = pki.issue('expired', { san: 'DNS:localhost', days: -1 });
    const s = await stack('expired', expired);
    const token = await mintToken(secret, {
      contactId: 'tls-3',
      participantId: 'v1',
      role: 'visitor',
      ttlSeconds: 300,
    });
    const env = { NODE_EXTRA_CA_CERTS: pki.caFile };
    const r = await latchkey(
      [
        'send',
        '--token',
        token,
        '--relay',
        `wss://localhost:${s.relayPort}`,
        '--keys',
        `https://localhost:${s.keysPort}`,
        'x',
      ],
      env,
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: TLS_FAILED key service: certificate has expired/);

    // A good key service in front of a relay with an expired certificate: the relay is named.
    const good = await stack('good-keys', pki.issue('good2', { san: 'DNS:localhost', days: 1 }));
    const r2 = await latchkey(
      [
        'send',
        '--token',
        token,
        '--relay',
        `wss://localhost:${s.relayPort}`,
        '--keys',
        `https://localhost:${good.keysPort}`,
        'x',
      ],
      env,
    );
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/^error: TLS_FAILED relay: certificate has expired/);
  });

  it('will not listen in plain text off loopback unless told --insecure', async () => {
    await expect(
      startRelay({ dataDir: join(dir, 'plain'), host: '0.0.0.0', port: 0, apiSecret: secret }),
    ).rejects.toThrow(InsecureListenerError);
    await expect(
      openKeyService({
        dataDir: join(dir, 'plain'),
        host: '0.0.0.0',
        port: 0,
        apiSecret: secret,
        masterKey,
      }),
    ).rejects.toThrow(/--insecure/);
    const relay = await startRelay({
      dataDir: join(dir, 'plain'),
      host: '0.0.0.0',
      port: 0,
      apiSecret: secret,
      insecure: true,
    });
    await relay.close();
  });
});
