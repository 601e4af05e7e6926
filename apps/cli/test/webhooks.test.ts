/**
 * `latchkey webhooks add|list|test|replay|remove` end to end against a real `latchkey start`
 * child process, for the relay's outbox and the key service's (`--service keys`): output lines,
 * exit codes, and signed calls that reach a receiver on loopback (allowed with
 * `--webhook-allowlist`) and verify with the endpoint's secret.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebhookVerifier } from '@latchkey/webhooks';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'latchkey.mjs');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function latchkey(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
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

interface Call {
  path: string;
  headers: Record<string, string>;
  body: string;
}

let dir: string;
let server: ChildProcess;
let receiver: Server;
let hookBase: string;
const calls: Call[] = [];
/** Paths the receiver answers with 503 while listed, and how many calls it refused there. */
const failing = new Set<string>();
const attempts: Record<string, number> = {};
const failedAt: Record<string, number> = {};

beforeAll(async () => {
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '';
      if (failing.has(path)) {
        attempts[path] = (attempts[path] ?? 0) + 1;
        failedAt[path] = Date.now();
        res.writeHead(503).end();
        return;
      }
      calls.push({
        path: req.url ?? '',
        headers: {
          'webhook-id': String(req.headers['webhook-id'] ?? ''),
          'webhook-timestamp': String(req.headers['webhook-timestamp'] ?? ''),
          'webhook-signature': String(req.headers['webhook-signature'] ?? ''),
        },
        body: Buffer.concat(chunks).toString('utf8'),
      });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  hookBase = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;

  dir = await mkdtemp(join(tmpdir(), 'latchkey-cli-webhooks-'));
  server = spawn(
    process.execPath,
    [BIN, 'start', '--data', dir, '--port', '0', '--webhook-allowlist', '127.0.0.1'],
    {
      stdio: ['ignore', 'pipe', 'ignore'],
    },
  );
  const lines = createInterface({ input: server.stdout! });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('start did not print ready')), 50_000);
    lines.on('line', (line) => {
      if (line === 'ready') {
        clearTimeout(timer);
        resolve();
      }
    });
    server.once('exit', (code) => reject(new Error(`start exited with ${code}`)));
  });
}, 60_000);

afterAll(async () => {
  if (server.exitCode === null) {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
  }
  await new Promise<void>((resolve) => receiver.close(() => resolve()));
  await rm(dir, { recursive: true, force: true });
});

async function until(what: string, predicate: () => boolean): Promise<void> {
  const deadline = Date.now() + 45_000;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The calls to `path` that verify with `secret`, as their event types. */
function verified(
  path: string,
  secret: string,
): { type: string; sequence?: number; data: Record<string, unknown> }[] {
  const verifier = createWebhookVerifier(secret, { replayGuard: false });
  return calls
    .filter((c) => c.path === path)
    .flatMap((c) => {
      try {
        return [
          verifier.verify(c.body, c.headers) as {
            type: string;
            sequence?: number;
            data: Record<string, unknown>;
          },
        ];
      } catch {
        // Signed with another secret (before or after a rotation).
        return [];
      }
    });
}

async function token(contact: string, participant: string, role = 'visitor'): Promise<string> {
  const r = await latchkey([
    'token',
    '--data',
    dir,
    '--contact',
    contact,
    '--participant',
    participant,
    '--role',
    role,
  ]);
  expect(r.code).toBe(0);
  return r.stdout.trim();
}

async function add(
  service: string[],
  path: string,
  events: string,
): Promise<{ id: string; secret: string }> {
  const r = await latchkey([
    'webhooks',
    'add',
    '--data',
    dir,
    ...service,
    '--url',
    `${hookBase}${path}`,
    '--events',
    events,
    '--description',
    'crm',
  ]);
  expect(r.code, r.stderr).toBe(0);
  const m = /^added (ep_\S+) (\S+)\nsecret: (whsec_\S+)\n$/.exec(r.stdout);
  expect(m, r.stdout).not.toBeNull();
  expect(m![2]).toBe(`${hookBase}${path}`);
  return { id: m![1]!, secret: m![3]! };
}

describe('latchkey webhooks', () => {
  for (const [name, service, path, events] of [
    ['relay', [], '/relay', 'message.stored'],
    ['key service', ['--service', 'keys'], '/keys', 'key.rotated,contact.shredded'],
  ] as const) {
    it(`add, list, test, replay, remove on the ${name}`, async () => {
      const ep = await add([...service], path, events);

      const list = await latchkey(['webhooks', 'list', '--data', dir, ...service]);
      expect(list.code).toBe(0);
      expect(list.stdout).toContain(
        `${ep.id} ${hookBase}${path} events=${events} pending=0 dead=0 delivered=0 last-error=none\n`,
      );
      const json = await latchkey(['webhooks', 'list', '--data', dir, ...service, '--json']);
      const parsed = json.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { id: string; description?: string });
      expect(parsed.find((e) => e.id === ep.id)).toMatchObject({ id: ep.id, description: 'crm' });

      const test = await latchkey(['webhooks', 'test', '--data', dir, ...service, '--id', ep.id]);
      expect(test).toMatchObject({ code: 0, stdout: `ok ${ep.id} status=204\n` });
      expect(verified(path, ep.secret).map((e) => e.type)).toEqual(['webhook.test']);

      const replay = await latchkey([
        'webhooks',
        'replay',
        '--data',
        dir,
        ...service,
        '--id',
        ep.id,
      ]);
      expect(replay).toMatchObject({ code: 0, stdout: 'replayed 0\n' });

      // An event of this service reaches the endpoint, signed with its secret.
      const contact = `wh-${path.slice(1)}`;
      const v = await token(contact, 'visitor-1');
      expect((await latchkey(['send', '--data', dir, '--token', v, 'hello'])).code).toBe(0);
      if (name === 'relay') {
        await until('message.stored', () =>
          verified(path, ep.secret).some((e) => e.type === 'message.stored'),
        );
        expect(
          verified(path, ep.secret).find((e) => e.type === 'message.stored')?.data,
        ).toMatchObject({ contactId: contact, seq: 1, senderId: 'visitor-1' });
      } else {
        const kick = await latchkey([
          'kick',
          '--data',
          dir,
          '--contact',
          contact,
          '--participant',
          'visitor-1',
        ]);
        expect(kick.code, kick.stderr).toBe(0);
        const shred = await latchkey(['shred', '--data', dir, '--contact', contact]);
        expect(shred.code, shred.stderr).toBe(0);
        await until('contact.shredded', () =>
          verified(path, ep.secret).some((e) => e.type === 'contact.shredded'),
        );
        expect(
          verified(path, ep.secret).map((e) => [e.type, e.data.contactId, e.data.epoch]),
        ).toEqual([
          ['webhook.test', undefined, undefined],
          ['key.rotated', contact, 1],
          ['contact.shredded', contact, undefined],
        ]);
      }

      const removed = await latchkey([
        'webhooks',
        'remove',
        '--data',
        dir,
        ...service,
        '--id',
        ep.id,
      ]);
      expect(removed).toMatchObject({ code: 0, stdout: `removed ${ep.id}\n` });
      expect(
        (await latchkey(['webhooks', 'list', '--data', dir, ...service])).stdout,
      ).not.toContain(ep.id);
      const gone = await latchkey(['webhooks', 'test', '--data', dir, ...service, '--id', ep.id]);
      expect(gone.code).toBe(1);
      expect(gone.stderr).toMatch(/^error: NOT_FOUND /);
    }, 180_000);
  }

  it('add warns at once on stderr about a private URL not on --webhook-allowlist, and adds it', async () => {
    // 127.0.0.1 is on the allowlist, 10.9.8.7 and ::1 are not.
    for (const [url, service] of [
      ['http://10.9.8.7/hook', []],
      ['http://[::1]:9/hook', ['--service', 'keys']],
    ] as const) {
      const r = await latchkey(['webhooks', 'add', '--data', dir, ...service, '--url', url]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(
        /^warning: ADDRESS_REFUSED \S+ resolves to \S+, a (loopback|private or special-purpose) address not on the allowlist; calls are refused until the service is started with it in --webhook-allowlist\n$/,
      );
      const m = /^added (ep_\S+) (\S+)\nsecret: whsec_\S+\n$/.exec(r.stdout);
      expect(m?.[2]).toBe(url);
      expect(
        (await latchkey(['webhooks', 'remove', '--data', dir, ...service, '--id', m![1]!])).code,
      ).toBe(0);
    }
    const fine = await latchkey(['webhooks', 'add', '--data', dir, '--url', `${hookBase}/fine`]);
    expect(fine).toMatchObject({ code: 0, stderr: '' });
    const id = /^added (ep_\S+)/.exec(fine.stdout)![1]!;
    expect((await latchkey(['webhooks', 'remove', '--data', dir, '--id', id])).code).toBe(0);
  }, 120_000);

  it('add refuses events the service never emits', async () => {
    for (const [service, events, name] of [
      [['--service', 'keys'], 'message.stored', 'key service'],
      [[], 'key.rotated', 'relay'],
    ] as const) {
      const r = await latchkey([
        'webhooks',
        'add',
        '--data',
        dir,
        ...service,
        '--url',
        `${hookBase}/never`,
        '--events',
        events,
      ]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        new RegExp(`^error: BAD_REQUEST ${name}: the ${name} never emits ${events} \\(it emits `),
      );
    }
  }, 60_000);

  it('numbers events per endpoint (signed `sequence`); rotate-secret prints the new secret once; retry sends pending now', async () => {
    const ep = await add([], '/seq', 'message.stored');
    const contact = 'wh-seq';
    const v = await token(contact, 'visitor-1');
    for (const text of ['one', 'two'])
      expect((await latchkey(['send', '--data', dir, '--token', v, text])).code).toBe(0);
    await until('two message.stored', () => verified('/seq', ep.secret).length === 2);
    expect(verified('/seq', ep.secret).map((e) => [e.data.seq, e.sequence])).toEqual([
      [1, 1],
      [2, 2],
    ]);

    const rot = await latchkey(['webhooks', 'rotate-secret', '--data', dir, '--id', ep.id]);
    expect(rot.code, rot.stderr).toBe(0);
    const m = /^rotated (ep_\S+)\nsecret: (whsec_\S+)\n$/.exec(rot.stdout);
    expect(m?.[1]).toBe(ep.id);
    const fresh = m![2]!;
    expect(fresh).not.toBe(ep.secret);
    const test = await latchkey(['webhooks', 'test', '--data', dir, '--id', ep.id]);
    expect(test.code, test.stderr).toBe(0);
    // The test call verifies with the new secret (and, during the overlap, the old one).
    expect(verified('/seq', fresh).map((e) => e.type)).toContain('webhook.test');
    expect(verified('/seq', ep.secret).map((e) => e.type)).toContain('webhook.test');

    // The receiver fails three times: after the third failure the message waits 10 to 20 s...
    failing.add('/seq');
    expect((await latchkey(['send', '--data', dir, '--token', v, 'three'])).code).toBe(0);
    await until('three failed attempts', () => attempts['/seq'] === 3);
    failing.delete('/seq');
    const lastFailure = failedAt['/seq']!;
    const retry = await latchkey(['webhooks', 'retry', '--data', dir, '--id', ep.id]);
    expect(retry).toMatchObject({ code: 0, stdout: 'retried pending=1 dead=0\n' });
    // ...and `retry` sends it now, with its number.
    await until('the third message', () =>
      verified('/seq', fresh).some((e) => e.type === 'message.stored' && e.data.seq === 3),
    );
    expect(Date.now() - lastFailure).toBeLessThan(10_000);
    // The old secret still signs during the overlap: every call verifies with it.
    expect(
      verified('/seq', ep.secret)
        .filter((e) => e.type === 'message.stored')
        .map((e) => e.sequence),
    ).toEqual([1, 2, 3]);

    const gone = await latchkey([
      'webhooks',
      'retry',
      '--data',
      dir,
      '--id',
      'ep_nosuchendpoint00',
    ]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/^error: NOT_FOUND /);
    const usage = await latchkey(['webhooks', 'rotate-secret', '--data', dir]);
    expect(usage.code).toBe(2);
  }, 180_000);

  it('keeps the two outboxes apart and refuses an unknown --service', async () => {
    const ep = await add(['--service', 'keys'], '/apart', 'key.rotated');
    expect((await latchkey(['webhooks', 'list', '--data', dir])).stdout).not.toContain(ep.id);
    expect(
      (await latchkey(['webhooks', 'list', '--data', dir, '--service', 'keys'])).stdout,
    ).toContain(ep.id);
    const bad = await latchkey(['webhooks', 'list', '--data', dir, '--service', 'web']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^error: USAGE --service must be relay or keys/);
    expect(
      (await latchkey(['webhooks', 'remove', '--data', dir, '--service', 'keys', '--id', ep.id]))
        .code,
    ).toBe(0);
  }, 120_000);
});
