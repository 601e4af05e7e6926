/**
 * The stand-alone `keyd` process (src/main.ts) takes the key-service settings of `latchkey
 * start` (src/settings.ts): started as a child process with the key manager over HTTP, its keys
 * on PostgreSQL (`--keys-store`), webhooks with an allowlist and the key cache, by flags and by
 * environment; two such processes over one key database hand out one key per contact. Bad shared
 * settings exit 2 with the usage.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { mintToken } from '@latchkey/tokens';
import { testPostgres } from '../../../packages/keys/test/_postgres.ts';
import { startKms } from '../../kms-example/src/kms.ts';
import { fetchSealedKey } from './_sealed-key.ts';

const ROOT = resolve(import.meta.dirname, '../../..');
const API_SECRET = new Uint8Array(32).fill(3);
const KMS_SECRET = new Uint8Array(32).fill(42);
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const BASE_ENV = {
  LATCHKEY_API_SECRET: hex(API_SECRET),
  LATCHKEY_MASTER_KEY: hex(new Uint8Array(32).fill(4)),
  LATCHKEY_KMS_SECRET: hex(KMS_SECRET),
  LATCHKEY_KEYS_LOG_LEVEL: 'silent',
};

const dir = mkdtempSync(join(tmpdir(), 'latchkey-keyd-main-'));
const children: ChildProcess[] = [];
afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

/** Runs keyd to its exit: code, stdout, stderr. */
function runKeyd(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'apps/keyd/src/main.ts', ...args], {
    cwd: ROOT,
    env: { ...process.env, LATCHKEY_DATA_DIR: join(dir, 'unused'), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise<{ code: number | null; out: string; err: string }>((r) =>
    child.on('exit', (code) => r({ code, out, err })),
  );
}

/** Starts keyd and resolves with its URL once it printed `keys: URL`. */
function startKeyd(args: string[], env: Record<string, string>): Promise<string> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'apps/keyd/src/main.ts', ...args], {
    cwd: ROOT,
    env: { ...process.env, ...BASE_ENV, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise<string>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`no URL printed; stderr: ${err}`)), 30_000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^keys: (http:\/\/127\.0\.0\.1:\d+)$/m.exec(out);
      if (m?.[1] !== undefined) {
        clearTimeout(timer);
        res(m[1]);
      }
    });
    child.on('exit', (code) => rej(new Error(`exited early (${code}); stderr: ${err}`)));
  });
}

async function keyOf(url: string, contactId: string): Promise<string> {
  const token = await mintToken(API_SECRET, {
    contactId,
    participantId: 'p1',
    role: 'agent',
    ttlSeconds: 60,
  });
  const res = await fetchSealedKey(url, token, 'p1');
  expect(res.status).toBe(200);
  return res.key!;
}

describe('keyd settings errors', () => {
  it('exits 2 with the message and the usage for a bad shared setting', async () => {
    const bad = await runKeyd(['--key-cache-ttl', 'soon']);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain(
      'keyd: --key-cache-ttl must be a whole number of seconds, 0 or more (0: off)',
    );
    expect(bad.err).toContain('usage: keyd');
    const store = await runKeyd([], { LATCHKEY_KEYS_STORE: 'mysql://u:pw@db/keys' });
    expect(store.code).toBe(2);
    expect(store.err).toContain('LATCHKEY_KEYS_STORE must be a postgres://... URL');
    expect(store.err).not.toContain(':pw@');
    const km = await runKeyd(['--key-manager', 'http']);
    expect(km.code).toBe(2);
    expect(km.err).toContain('--key-manager http needs --kms-url');
  }, 60_000);

  it('--help lists the flags latchkey start takes', async () => {
    const help = await runKeyd(['--help']);
    expect(help.code).toBe(0);
    for (const flag of ['--keys-store', '--key-manager', '--webhook-allowlist', '--key-cache-ttl'])
      expect(help.out).toContain(flag);
  }, 30_000);
});

const server = await testPostgres('keyd on a PostgreSQL key store');
afterAll(() => server?.stop());

if (server) {
  describe('keyd with --keys-store and --key-manager http', () => {
    it('two processes, one by flags and one by environment, share the keys', async () => {
      const keyStoreUrl = await server.newDatabase();
      const kms = await startKms({
        path: join(dir, 'kms', 'kms.db'),
        rootKey: new Uint8Array(32).fill(24),
        clients: { latchkey: KMS_SECRET },
      });
      try {
        const a = await startKeyd(
          [
            '--data-dir',
            join(dir, 'a'),
            '--port',
            '0',
            '--keys-store',
            keyStoreUrl,
            '--key-manager',
            'http',
            '--kms-url',
            kms.url,
            '--webhook-allowlist',
            '127.0.0.1/32',
            '--admin-allowlist',
            '127.0.0.1',
            '--key-cache-ttl',
            '30',
          ],
          {},
        );
        const b = await startKeyd([], {
          LATCHKEY_DATA_DIR: join(dir, 'b'),
          LATCHKEY_KEYS_PORT: '0',
          LATCHKEY_KEYS_STORE: keyStoreUrl,
          LATCHKEY_KEY_MANAGER: 'http',
          LATCHKEY_KMS_URL: kms.url,
          LATCHKEY_WEBHOOK_ALLOWLIST: '127.0.0.1/32',
          LATCHKEY_KEY_CACHE_TTL: '30',
        });
        for (const url of [a, b]) {
          const health = (await (await fetch(`${url}/healthz`)).json()) as { backend?: string };
          expect(health.backend).toBe('http');
          // Webhooks are on, as with latchkey start: their admin routes answer (401 without a key).
          expect((await fetch(`${url}/admin/v1/webhooks`)).status).toBe(401);
        }
        const ids = ['m1', 'm2', 'm3'];
        const fromA = await Promise.all(ids.map((id) => keyOf(a, id)));
        const fromB = await Promise.all(ids.map((id) => keyOf(b, id)));
        expect(fromB).toEqual(fromA);
        expect(new Set(fromA).size).toBe(ids.length);
      } finally {
        for (const c of children) c.kill('SIGTERM');
        await Promise.all(
          children.map((c) =>
            c.exitCode === null ? new Promise((r) => c.once('exit', r)) : undefined,
          ),
        );
        await kms.close();
      }
    }, 90_000);
  });
}
