/**
 * openKeyService over a data directory: the file layout and modes, keys and the signing key
 * surviving a restart, a wrong master key refusing to start, and the process entry (main.ts)
 * started as a real child process and stopped with SIGTERM.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LatchkeyError } from '@latchkey/protocol';
import { mintToken } from '@latchkey/tokens';
import { openKeyService } from '../src/index.ts';
import { fetchSealedKey } from './_sealed-key.ts';

const secret = new Uint8Array(32).fill(3);
const masterKey = new Uint8Array(32).fill(4);
const posix = process.platform !== 'win32';
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'latchkey-keyd-open-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function fetchKey(url: string, contactId: string): Promise<string> {
  const token = await mintToken(secret, {
    contactId,
    participantId: 'p1',
    role: 'visitor',
    ttlSeconds: 60,
  });
  const res = await fetchSealedKey(url, token, 'p1');
  expect(res.status).toBe(200);
  return res.key!;
}

describe('openKeyService', () => {
  it('lays out <dataDir>/keys privately and keeps keys and the signing key across restarts', async () => {
    const a = await openKeyService({
      dataDir: dir,
      host: '127.0.0.1',
      port: 0,
      apiSecret: secret,
      masterKey,
    });
    const key = await fetchKey(a.url, 'c1');
    const pub = a.servicePublicKey;
    await a.close();
    await a.close(); // idempotent
    if (posix) {
      expect(statSync(join(dir, 'keys')).mode & 0o777).toBe(0o700);
      for (const f of ['keys.db', 'service-signing.key']) {
        expect(statSync(join(dir, 'keys', f)).mode & 0o777).toBe(0o600);
      }
    }
    // The signing key file holds only the wrapped form (60 bytes), never the seed itself.
    expect(readFileSync(join(dir, 'keys', 'service-signing.key'))).toHaveLength(60);

    const b = await openKeyService({
      dataDir: dir,
      host: '127.0.0.1',
      port: 0,
      apiSecret: secret,
      masterKey,
    });
    try {
      expect(b.servicePublicKey).toBe(pub);
      expect(await fetchKey(b.url, 'c1')).toBe(key);
      const sk = (await (await fetch(`${b.url}/v1/service-key`)).json()) as { publicKey: string };
      expect(sk.publicKey).toBe(pub);
    } finally {
      await b.close();
    }
  });

  it('refuses to start with another master key', async () => {
    const a = await openKeyService({
      dataDir: dir,
      host: '127.0.0.1',
      port: 0,
      apiSecret: secret,
      masterKey,
    });
    await fetchKey(a.url, 'c1');
    await a.close();
    const err = await openKeyService({
      dataDir: dir,
      host: '127.0.0.1',
      port: 0,
      apiSecret: secret,
      masterKey: new Uint8Array(32).fill(5),
    }).catch((e: unknown) => e);
    expect(LatchkeyError.is(err, 'KEY_UNAVAILABLE')).toBe(true);
  });
});

describe('main.ts', () => {
  it('starts from the environment, prints its URL and stops cleanly on SIGTERM', async () => {
    const root = resolve(import.meta.dirname, '../../..');
    const child = spawn(process.execPath, ['--import', 'tsx', 'apps/keyd/src/main.ts'], {
      cwd: root,
      env: {
        ...process.env,
        LATCHKEY_DATA_DIR: dir,
        LATCHKEY_KEYS_PORT: '0',
        LATCHKEY_KEYS_LOG_LEVEL: 'silent',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let errText = '';
    child.stderr.on('data', (d: Buffer) => (errText += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    const url = await new Promise<string>((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`no URL printed; stderr: ${errText}`)), 20_000);
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /^keys: (http:\/\/127\.0\.0\.1:\d+)$/m.exec(out);
        if (m?.[1] !== undefined) {
          clearTimeout(timer);
          res(m[1]);
        }
      });
      child.on('exit', () => rej(new Error(`exited early; stderr: ${errText}`)));
    });
    try {
      const health = await fetch(`${url}/healthz`);
      expect(await health.json()).toEqual({ status: 'ok', backend: 'internal' });
      const apiSecret = new Uint8Array(readFileSync(join(dir, 'api-secret')));
      const token = await mintToken(apiSecret, {
        contactId: 'c1',
        participantId: 'p1',
        role: 'agent',
        ttlSeconds: 60,
      });
      const res = await fetchSealedKey(url, token, 'p1');
      expect(res.status).toBe(200);
      if (posix) expect(statSync(join(dir, 'master.key')).mode & 0o777).toBe(0o600);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(errText).toContain('generated a new master key');
  });

  it('exits 2 with a clear message for bad configuration', async () => {
    const root = resolve(import.meta.dirname, '../../..');
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'apps/keyd/src/main.ts', '--port', 'http'],
      {
        cwd: root,
        env: { ...process.env, LATCHKEY_DATA_DIR: dir },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let errText = '';
    child.stderr.on('data', (d: Buffer) => (errText += d.toString()));
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    expect(code).toBe(2);
    expect(errText).toContain('port (--port / LATCHKEY_KEYS_PORT) must be an integer');
  });
});
