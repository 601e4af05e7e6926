/**
 * The external key manager's failure handling and diagnostics (issue 14), over real sockets and
 * processes: `latchkey start` in the store model on a new data directory, the start-up
 * self-check (a key manager that refuses our signature stops `start` with exit 1 and a message
 * naming the cause), 401 and 403 told apart in errors, logs and `/healthz`, malformed answers
 * called malformed, unknown fields in answers ignored while known ones are validated strictly,
 * a too-short secret as a usage error, and every `--kms-*` flag in `latchkey help` and README.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { toBase64Url } from '@latchkey/crypto/codec';
import { openKeyService } from '@latchkey/keyd';
import { openHttpKeyStoreManager, type KmClientOptions } from '@latchkey/keys';
import { LatchkeyError } from '@latchkey/protocol';
import { mintToken } from '@latchkey/tokens';
import { CLI, ROOT, startKmsChild } from './_byok.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

interface Answer {
  status: number;
  body?: unknown;
  raw?: string;
}

/** A scripted key manager on 127.0.0.1: `answer` decides each reply (no signature checks). */
async function fakeKms(
  answer: (req: IncomingMessage) => Answer,
): Promise<{ url: string; set(a: (req: IncomingMessage) => Answer): void; seen: string[] }> {
  let current = answer;
  const seen: string[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on('end', () => {
      seen.push(`${req.method} ${req.url}`);
      const a = current(req);
      res.writeHead(a.status, { 'content-type': 'application/json' });
      res.end(a.raw ?? (a.body === undefined ? '' : JSON.stringify(a.body)));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    set: (a) => void (current = a),
    seen,
  };
}

const kmError = (status: number, code: string, message: string): Answer => ({
  status,
  body: { error: { code, message } },
});

function clientOptions(url: string, secret: Uint8Array): KmClientOptions {
  return {
    url,
    auth: { type: 'hmac', clientId: 'latchkey', secret },
    timeoutMs: 1000,
    retries: 0,
    backoffMs: 5,
  };
}

async function errorOf(p: Promise<unknown>): Promise<LatchkeyError> {
  try {
    await p;
  } catch (err) {
    if (LatchkeyError.is(err)) return err;
    throw err;
  }
  throw new Error('expected a LatchkeyError');
}

interface StartRun {
  /** 'ready' when start printed ready (then the process runs), else its exit code. */
  outcome: 'ready' | number;
  stdout: string;
  stderr: string;
  child: ChildProcess;
}

/** Runs `latchkey start` until it prints `ready` or exits. */
async function latchkeyStart(args: string[], env: NodeJS.ProcessEnv): Promise<StartRun> {
  const child = spawn(process.execPath, [CLI, 'start', '--port', '0', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  cleanups.push(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  });
  const run = { stdout: '', stderr: '', child };
  child.stderr?.on('data', (c: Buffer) => (run.stderr += c.toString()));
  const outcome = await new Promise<'ready' | number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`start hung: ${run.stderr}`)), 25_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      run.stdout += `${line}\n`;
      if (line === 'ready') {
        clearTimeout(timer);
        resolve('ready');
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code ?? 1);
    });
  });
  return { ...run, outcome };
}

async function kmsChild(secret: Uint8Array): Promise<{ url: string }> {
  const dir = await tempDir('latchkey-kms-diag-');
  const kms = await startKmsChild(dir, secret);
  cleanups.push(() => kms.stop());
  return kms;
}

describe('store model on a new data directory', () => {
  it('openKeyService creates keys/ and hands out a key from the reference key manager', async () => {
    const secret = crypto.getRandomValues(new Uint8Array(32));
    const kms = await kmsChild(secret);
    const dir = await tempDir('latchkey-store-new-');
    const apiSecret = crypto.getRandomValues(new Uint8Array(32));
    const keys = await openKeyService({
      dataDir: join(dir, 'fresh'),
      host: '127.0.0.1',
      port: 0,
      apiSecret,
      masterKey: crypto.getRandomValues(new Uint8Array(32)),
      keyManager: { kind: 'http', model: 'store', url: kms.url, secret, retries: 0 },
      allowPlainKeyDelivery: true,
      keyManagerLog: () => undefined,
    });
    cleanups.push(() => keys.close());
    const token = await mintToken(apiSecret, {
      contactId: 'store-new',
      participantId: 'v1',
      role: 'visitor',
      ttlSeconds: 60,
    });
    const res = await fetch(`${keys.url}/v1/contact-key`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: '{}',
    });
    const json = (await res.json()) as { epoch?: number };
    expect(res.status, JSON.stringify(json)).toBe(200);
    expect(json.epoch).toBe(0);
  });

  it('latchkey start --kms-model store on a new data directory prints ready', async () => {
    const secret = crypto.getRandomValues(new Uint8Array(32));
    const kms = await kmsChild(secret);
    const dir = await tempDir('latchkey-store-cli-');
    const run = await latchkeyStart(
      ['--data', join(dir, 'new'), '--key-manager', 'http', '--kms-model', 'store'],
      { LATCHKEY_KMS_URL: kms.url, LATCHKEY_KMS_SECRET: toBase64Url(secret) },
    );
    expect(run.outcome, run.stderr).toBe('ready');
  });
});

describe('start-up self-check', () => {
  it('a key manager that refuses our signature stops start with exit 1 naming the cause', async () => {
    const kms = await kmsChild(crypto.getRandomValues(new Uint8Array(32)));
    const ours = crypto.getRandomValues(new Uint8Array(32));
    const dir = await tempDir('latchkey-selfcheck-');
    const run = await latchkeyStart(
      ['--data', dir, '--key-manager', 'http', '--kms-url', kms.url],
      { LATCHKEY_KMS_SECRET: toBase64Url(ours) },
    );
    expect(run.outcome, run.stdout).toBe(1);
    expect(run.stderr).toMatch(/^error: KEY_UNAVAILABLE .*signature/m);
    expect(run.stderr).toContain('401');
    expect(run.stderr).toMatch(/--kms-client-id|LATCHKEY_KMS_SECRET/);
    expect(run.stderr).not.toContain(toBase64Url(ours));
    expect(run.stderr).not.toContain(Buffer.from(ours).toString('hex'));
  });

  it('a key manager that is down does not stop start (wrap model), and says so', async () => {
    const dead = await fakeKms(() => ({ status: 503, body: { status: 'degraded' } }));
    const dir = await tempDir('latchkey-selfcheck-down-');
    const run = await latchkeyStart(
      ['--data', dir, '--key-manager', 'http', '--kms-url', dead.url, '--kms-timeout', '500ms'],
      { LATCHKEY_KMS_SECRET: toBase64Url(crypto.getRandomValues(new Uint8Array(32))) },
    );
    expect(run.outcome, run.stderr).toBe('ready');
    expect(run.stderr).toMatch(/key manager.*HTTP 503/);
  });

  /** A key manager that is up and describes its key with `meta` (404 when undefined). */
  const describing = (meta: Record<string, unknown> | undefined) =>
    fakeKms((req) => {
      if (req.url === '/v1/health') return { status: 200, body: { status: 'ok' } };
      if (req.url === '/v1/keys/kek-a' && meta !== undefined)
        return {
          status: 200,
          body: {
            keyId: 'kek-a',
            algorithm: 'AES-256-GCM',
            primaryVersion: 1,
            createdAt: 0,
            ...meta,
          },
        };
      return kmError(404, 'NOT_FOUND', 'no such key');
    });
  const startOn = async (url: string, extra: string[] = []) =>
    latchkeyStart(
      [
        '--data',
        await tempDir('latchkey-selfcheck-kek-'),
        '--key-manager',
        'http',
        '--kms-url',
        url,
        '--kms-key-id',
        'kek-a',
        ...extra,
      ],
      { LATCHKEY_KMS_SECRET: toBase64Url(crypto.getRandomValues(new Uint8Array(32))) },
    );

  it('a key manager without our key (metadata 404) stops start with exit 1 naming it', async () => {
    const km = await describing(undefined);
    const run = await startOn(km.url);
    expect(run.outcome, run.stdout).toBe(1);
    expect(run.stderr).toMatch(/^error: KEY_UNAVAILABLE .* has no key kek-a .*--kms-key-id/m);
    expect(km.seen).toEqual(['GET /v1/health', 'GET /v1/keys/kek-a']);
  });

  it('a disabled key, or one without generate under --kms-generate, stops start (exit 1)', async () => {
    const disabled = await describing({ state: 'disabled', operations: ['wrap', 'unwrap'] });
    const a = await startOn(disabled.url);
    expect(a.outcome, a.stdout).toBe(1);
    expect(a.stderr).toMatch(/key kek-a is disabled/);
    const plain = await describing({
      state: 'enabled',
      operations: ['wrap', 'unwrap', 'future-op'],
    });
    const b = await startOn(plain.url, ['--kms-generate']);
    expect(b.outcome, b.stdout).toBe(1);
    expect(b.stderr).toMatch(/key kek-a does not offer generate.*--kms-generate/);
    // Without --kms-generate the same key is fine (an unknown operation name is ignored).
    const c = await startOn(plain.url);
    expect(c.outcome, c.stderr).toBe('ready');
  });

  it('a too-short secret is a usage error (exit 2)', async () => {
    const dir = await tempDir('latchkey-short-');
    const run = await latchkeyStart(
      ['--data', dir, '--key-manager', 'http', '--kms-url', 'http://127.0.0.1:9'],
      { LATCHKEY_KMS_SECRET: toBase64Url(new Uint8Array(16).fill(7)) },
    );
    expect(run.outcome).toBe(2);
    expect(run.stderr).toMatch(/^error: USAGE .*LATCHKEY_KMS_SECRET.*at least 32 bytes/m);
  });
});

describe('401 and 403 read differently, in errors, logs and /healthz', () => {
  it('adapter errors', async () => {
    const secret = crypto.getRandomValues(new Uint8Array(32));
    const kms = await fakeKms(() => kmError(401, 'AUTH_INVALID', 'request not authenticated'));
    const km = openHttpKeyStoreManager(clientOptions(kms.url, secret));
    cleanups.push(() => km.close());
    const e401 = await errorOf(km.currentEpoch('c1'));
    kms.set(() => kmError(403, 'FORBIDDEN', 'refused by policy'));
    const e403 = await errorOf(km.currentEpoch('c1'));
    kms.set(() => kmError(401, 'AUTH_EXPIRED', 'request timestamp outside the window'));
    const expired = await errorOf(km.currentEpoch('c1'));
    for (const e of [e401, e403, expired]) expect(e.code).toBe('KEY_UNAVAILABLE');
    expect(e401.message).toMatch(/signature/);
    expect(e401.message).toContain('401');
    expect(e403.message).toMatch(/refused access|policy/);
    expect(e403.message).toContain('403');
    expect(e403.message).not.toMatch(/signature/);
    expect(expired.message).toMatch(/clock/);
    expect(new Set([e401.message, e403.message, expired.message]).size).toBe(3);
  });

  it('the key service logs each failure with status and reason, and /healthz shows backend and last error', async () => {
    const secret = crypto.getRandomValues(new Uint8Array(32));
    const kms = await fakeKms((req) =>
      req.url === '/v1/keys/latchkey-kek'
        ? {
            status: 200,
            body: {
              keyId: 'latchkey-kek',
              algorithm: 'AES-256-GCM',
              primaryVersion: 1,
              state: 'enabled',
              operations: ['wrap', 'unwrap'],
              createdAt: 0,
            },
          }
        : { status: 200, body: { status: 'ok' } },
    );
    const dir = await tempDir('latchkey-healthz-');
    const lines: string[] = [];
    const keys = await openKeyService({
      dataDir: dir,
      host: '127.0.0.1',
      port: 0,
      apiSecret: crypto.getRandomValues(new Uint8Array(32)),
      masterKey: crypto.getRandomValues(new Uint8Array(32)),
      keyManager: { kind: 'http', url: kms.url, secret, retries: 0 },
      keyManagerLog: (line) => lines.push(line),
    });
    cleanups.push(() => keys.close());
    const health = async (): Promise<{ status: number; json: Record<string, unknown> }> => {
      const res = await fetch(`${keys.url}/healthz`);
      return { status: res.status, json: (await res.json()) as Record<string, unknown> };
    };
    const ok = await health();
    expect(ok.status).toBe(200);
    expect(ok.json).toMatchObject({ status: 'ok', backend: 'http' });
    expect(ok.json.lastError).toBeUndefined();

    kms.set(() => kmError(403, 'FORBIDDEN', 'refused by policy'));
    const h403 = await health();
    expect(h403.status).toBe(503);
    expect(h403.json).toMatchObject({
      status: 'degraded',
      backend: 'http',
      lastError: { status: 403, code: 'FORBIDDEN' },
    });
    const last403 = h403.json.lastError as { at: string; reason: string };
    expect(Number.isNaN(Date.parse(last403.at))).toBe(false);

    kms.set(() => kmError(401, 'AUTH_INVALID', 'request not authenticated'));
    const h401 = await health();
    expect(h401.json).toMatchObject({ lastError: { status: 401, code: 'AUTH_INVALID' } });
    const last401 = h401.json.lastError as { reason: string };
    expect(last401.reason).toMatch(/signature/);
    expect(last401.reason).not.toBe(last403.reason);

    const log = lines.join('\n');
    expect(log).toMatch(/HTTP 403 FORBIDDEN/);
    expect(log).toMatch(/HTTP 401 AUTH_INVALID/);
    expect(log).toMatch(/signature/);
    for (const text of [log, JSON.stringify(h401.json), JSON.stringify(h403.json)]) {
      expect(text).not.toContain(toBase64Url(secret));
      expect(text).not.toContain(Buffer.from(secret).toString('hex'));
    }
  });
});

describe('answers: malformed versus unknown fields', () => {
  const key = toBase64Url(new Uint8Array(32).fill(9));

  it('a malformed answer is called malformed, naming the field but not its value', async () => {
    const kms = await fakeKms(() => ({
      status: 200,
      body: { contactId: 'c1', epoch: 0, currentEpoch: 0, key: toBase64Url(new Uint8Array(31)) },
    }));
    const km = openHttpKeyStoreManager(
      clientOptions(kms.url, crypto.getRandomValues(new Uint8Array(32))),
    );
    cleanups.push(() => km.close());
    const e = await errorOf(km.getContentKey('c1', 0));
    expect(e.code).toBe('KEY_UNAVAILABLE');
    expect(e.message).toMatch(/malformed/);
    expect(e.detail).toContain('key');
    kms.set(() => ({ status: 200, raw: '<html>oops' }));
    const notJson = await errorOf(km.currentEpoch('c1'));
    expect(notJson.message).toMatch(/malformed/);
  });

  it('unknown fields are ignored (forward compatible), in answers and error answers', async () => {
    const kms = await fakeKms((req) =>
      req.url?.startsWith('/v1/store/contacts/c1/keys/')
        ? {
            status: 200,
            body: { contactId: 'c1', epoch: 0, currentEpoch: 2, key, keyVersion: 7, hint: 'x' },
          }
        : {
            status: 404,
            body: { error: { code: 'NOT_FOUND', message: 'no such contact', requestId: 'r1' } },
          },
    );
    const km = openHttpKeyStoreManager(
      clientOptions(kms.url, crypto.getRandomValues(new Uint8Array(32))),
    );
    cleanups.push(() => km.close());
    const got = await km.getContentKey('c1', 0);
    expect(got.currentEpoch).toBe(2);
    expect(toBase64Url(got.key)).toBe(key);
    const e = await errorOf(km.currentEpoch('c2'));
    expect(e.code).toBe('NOT_FOUND');
  });
});

describe('flags are documented', () => {
  const FLAGS: [flag: string, env: string][] = [
    ['--kms-url', 'LATCHKEY_KMS_URL'],
    ['--kms-model', 'LATCHKEY_KMS_MODEL'],
    ['--kms-key-id', 'LATCHKEY_KMS_KEY_ID'],
    ['--kms-client-id', 'LATCHKEY_KMS_CLIENT_ID'],
    ['--kms-secret-file', 'LATCHKEY_KMS_SECRET_FILE'],
    ['--kms-timeout', 'LATCHKEY_KMS_TIMEOUT'],
    ['--kms-cache-ttl', 'LATCHKEY_KMS_CACHE_TTL'],
    ['--kms-generate', 'LATCHKEY_KMS_GENERATE'],
  ];
  const optionsIn = (text: string): string[] =>
    [...new Set([...text.matchAll(/'(kms-[a-z-]+)'/g)].map((m) => `--${m[1]}`))].sort();

  it('latchkey help and README list every --kms-* flag with its environment variable and default', async () => {
    const help = await new Promise<string>((resolve) => {
      const c = spawn(process.execPath, [CLI, 'help'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      c.stdout.on('data', (b: Buffer) => (out += b.toString()));
      c.once('exit', () => resolve(out));
    });
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const source = readFileSync(join(ROOT, 'apps', 'keyd', 'src', 'settings-flags.ts'), 'utf8');
    expect(optionsIn(source)).toEqual(FLAGS.map(([f]) => f).sort());
    for (const text of [help, readme]) {
      for (const [flag, env] of FLAGS) {
        const line = text.split('\n').find((l) => l.includes(flag) && l.includes(env));
        expect(line, `${flag} with ${env}`).toBeDefined();
        expect(line!, `${flag} default`).toMatch(/default|required/);
      }
      expect(text).toMatch(/LATCHKEY_KMS_SECRET(?!_)/);
    }
  });
});
