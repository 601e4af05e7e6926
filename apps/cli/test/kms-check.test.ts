/**
 * `latchkey kms check` (apps/cli/src/kms-check.ts): the reference key manager (apps/kms-example)
 * passes it in both models through the real command; broken key managers (a proxy in front of
 * the reference that skips the signature checks by re-signing every request, or one that
 * answers unwraps with another key) fail exactly the checks that catch them.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toBase64Url } from '@latchkey/crypto/codec';
import { signKmRequest } from '@latchkey/keys';
import { startKms, type Kms } from '../../kms-example/src/kms.ts';
import { runKmsCheck } from '../src/kms-check.ts';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'latchkey.mjs');
const SECRET = new Uint8Array(32).fill(7);
const CLIENT = 'latchkey';

function latchkey(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { env: { ...process.env, ...env }, timeout: 60_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
      },
    );
  });
}

/**
 * A key manager that forwards to `target`: `resign` replaces the request's authentication by a
 * fresh valid one (so it accepts anything: no signature check of its own), `wrong-key` answers
 * every unwrap with a key other than the wrapped one.
 */
async function brokenKms(
  target: string,
  mode: 'resign' | 'wrong-key',
): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const body = Buffer.concat(chunks);
        const path = req.url ?? '/';
        const method = req.method ?? 'GET';
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(req.headers))
          if (typeof v === 'string' && k.startsWith('x-latchkey-')) headers[k] = v;
        const auth =
          mode === 'resign'
            ? signKmRequest({ method, path, body }, { clientId: CLIENT, secret: SECRET })
            : headers;
        const answer = await fetch(`${target}${path}`, {
          method,
          headers: { ...auth, ...(body.length > 0 ? { 'content-type': 'application/json' } : {}) },
          ...(body.length > 0 ? { body } : {}),
        });
        let text = await answer.text();
        if (mode === 'wrong-key' && answer.status === 200 && path.endsWith('/unwrap')) {
          text = JSON.stringify({ key: toBase64Url(crypto.getRandomValues(new Uint8Array(32))) });
        }
        res.writeHead(answer.status, { 'content-type': 'application/json' }).end(text);
      })().catch(() => res.writeHead(502).end());
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

let dir: string;
let kms: Kms;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'latchkey-kms-check-'));
  kms = await startKms({
    path: join(dir, 'kms.db'),
    rootKey: new Uint8Array(32).fill(3),
    clients: { [CLIENT]: SECRET },
  });
});

afterAll(async () => {
  await kms.close();
  await rm(dir, { recursive: true, force: true });
});

async function check(url: string, model: 'wrap' | 'store') {
  const lines: string[] = [];
  const code = await runKmsCheck(
    { url, model, keyId: 'latchkey-kek', clientId: CLIENT, secret: SECRET, timeoutMs: 5000 },
    (l) => lines.push(l),
  );
  const failed = lines.filter((l) => l.startsWith('FAIL ')).map((l) => l.split(' ')[1]);
  return { code, lines, failed };
}

const AUTH_CHECKS = [
  'unsigned',
  'bad-signature',
  'unknown-client',
  'tampered-body',
  'tampered-path',
  'stale-timestamp',
  'future-timestamp',
  'replayed-nonce',
];

describe('latchkey kms check', () => {
  for (const model of ['wrap', 'store'] as const) {
    it(`the reference key manager passes every check (${model} model, the command)`, async () => {
      const r = await latchkey(['kms', 'check', '--kms-url', kms.url, '--kms-model', model], {
        LATCHKEY_KMS_SECRET: Buffer.from(SECRET).toString('hex'),
      });
      expect(r.stderr).toBe('');
      const lines = r.stdout.trim().split('\n');
      for (const l of lines.slice(0, -1)) expect(l).toMatch(/^ok [a-z-]+( \(.*\))?$/);
      for (const name of AUTH_CHECKS) expect(lines).toContain(`ok ${name}`);
      expect(lines.at(-1)).toBe(`${lines.length - 1} passed, 0 failed`);
      expect(r.code).toBe(0);
    }, 60_000);
  }

  it('the calls carry the key service reasons, in its order (store model)', async () => {
    const before = kms.audit().length;
    await check(kms.url, 'store');
    const ops = kms
      .audit()
      .slice(before)
      .filter((a) => a.status < 400 || a.operation === 'store.get')
      .map((a) => `${a.operation}${a.reason === null ? '' : `:${a.reason}`}:${a.status}`);
    // A new contact: a fetch that gets 404, then create, then the fetch again.
    const create = ops.indexOf('store.create:create:200');
    expect(create).toBeGreaterThan(0);
    expect(ops.slice(create - 1, create + 2)).toEqual([
      'store.get:fetch:404',
      'store.create:create:200',
      'store.get:fetch:200',
    ]);
    expect(ops).toContain('store.rotate:rotate:200');
    expect(ops).toContain('store.destroy:destroy:204');
    expect(ops.some((o) => o.startsWith('store.copy'))).toBe(false);
  });

  it('the wrap model checks destroy: 204, then the contact is refused (403)', async () => {
    const before = kms.audit().length;
    const r = await check(kms.url, 'wrap');
    expect(r.lines).toContain('ok destroy');
    const after = kms.audit().slice(before);
    const d = after.find((a) => a.operation === 'destroy');
    expect(d).toMatchObject({ reason: 'destroy', status: 204 });
    expect(
      after.some(
        (a) => a.operation === 'unwrap' && a.contactId === d?.contactId && a.status === 403,
      ),
    ).toBe(true);
  });

  for (const model of ['wrap', 'store'] as const) {
    it(`a key manager that skips signature checks fails the auth checks only (${model})`, async () => {
      const broken = await brokenKms(kms.url, 'resign');
      try {
        const r = await check(broken.url, model);
        // A refused request re-signed by the proxy is accepted: every auth check fails.
        expect(r.failed.sort()).toEqual([...AUTH_CHECKS].sort());
        expect(r.lines.at(-1)).toMatch(new RegExp(`^\\d+ passed, ${AUTH_CHECKS.length} failed$`));
        expect(r.lines).toContainEqual(expect.stringMatching(/^FAIL bad-signature want 401/));
        expect(r.code).toBe(1);
      } finally {
        await broken.close();
      }
    });
  }

  it('a key manager that answers unwraps with another key fails the unwrap checks', async () => {
    const broken = await brokenKms(kms.url, 'wrong-key');
    try {
      const r = await check(broken.url, 'wrap');
      expect(r.failed).toEqual(
        expect.arrayContaining(['unwrap-fetch', 'unwrap-rotated', 'unwrap-old-epoch']),
      );
      expect(r.failed).not.toContain('bad-signature');
      expect(r.failed).not.toContain('wrap-create');
      expect(r.lines).toContain(
        'FAIL unwrap-fetch unwrap answered another key than the one wrapped',
      );
      expect(r.code).toBe(1);
    } finally {
      await broken.close();
    }
  });

  it('an unreachable key manager fails, and usage errors exit 2', async () => {
    const r = await check('http://127.0.0.1:9', 'wrap');
    expect(r.failed).toContain('health');
    expect(r.code).toBe(1);
    const env = { LATCHKEY_KMS_SECRET: Buffer.from(SECRET).toString('hex') };
    const bad = await latchkey(['kms', 'check', '--kms-url', kms.url, '--kms-model', 'x'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^error: USAGE --kms-model must be wrap or store/);
    expect((await latchkey(['kms', 'nope'], env)).code).toBe(2);
    expect((await latchkey(['kms', 'check'], env)).code).toBe(2);
  }, 60_000);
});
