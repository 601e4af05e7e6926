/**
 * The `latchkey` command contract (README "Command line"): a real `latchkey start` child
 * process, then token/send/read from other processes, with their output lines and exit codes.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import Database from 'better-sqlite3';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

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
      { env: { ...process.env, ...env }, timeout: 30_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

let dir: string;
let server: ChildProcess;
const urls: Record<string, string> = {};
const serverOutput: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'latchkey-cli-'));
  server = spawn(process.execPath, [BIN, 'start', '--data', dir, '--port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines = createInterface({ input: server.stdout! });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`start did not print ready: ${serverOutput.join('\n')}`)),
      20_000,
    );
    lines.on('line', (line) => {
      serverOutput.push(line);
      const m = /^(relay|keys|web|visitor|agent|data|master-key): (.+)$/.exec(line);
      if (m?.[1] && m[2]) urls[m[1]] = m[2];
      if (line === 'ready') {
        clearTimeout(timer);
        resolve();
      }
    });
    server.once('exit', (code) => reject(new Error(`start exited with ${code}`)));
  });
}, 30_000);

afterAll(async () => {
  if (server.exitCode === null) {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
  }
  await rm(dir, { recursive: true, force: true });
});

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

describe('latchkey start', () => {
  it('prints the relay and key service URLs, then ready', () => {
    expect(urls.relay).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/);
    expect(urls.keys).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(urls['master-key']).toContain(join(dir, 'master.key'));
    expect(serverOutput.indexOf('ready')).toBeGreaterThan(
      serverOutput.findIndex((l) => l.startsWith('keys: ')),
    );
  });

  it('prints the web, visitor and agent URLs of a ready demo conversation before ready', async () => {
    expect(urls.web).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const contact = new URL(urls.visitor!).searchParams.get('contact');
    expect(contact).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
    // The demo backend's per-start key rides in the fragment (docs/web.md "The demo backend").
    const demoKey = new URLSearchParams(new URL(urls.visitor!).hash.slice(1)).get('demo-key');
    expect(demoKey).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(urls.visitor).toBe(`${urls.web}/demo?contact=${contact}#demo-key=${demoKey}`);
    expect(urls.agent).toBe(`${urls.web}/agent?contact=${contact}#demo-key=${demoKey}`);
    const ready = serverOutput.indexOf('ready');
    for (const name of ['web', 'visitor', 'agent']) {
      const i = serverOutput.findIndex((l) => l.startsWith(`${name}: `));
      expect(i, name).toBeGreaterThan(serverOutput.findIndex((l) => l.startsWith('keys: ')));
      expect(i, name).toBeLessThan(ready);
    }
    for (const url of [urls.web!, urls.visitor!, urls.agent!, `${urls.web}/widget.js`]) {
      expect((await fetch(url)).status, url).toBe(200);
    }
    // The demo backend answers with a visitor session for that contact, token minted server-side.
    const res = await fetch(`${urls.web}/api/demo/visitor-session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-latchkey-demo-key': demoKey! },
      body: JSON.stringify({ contactId: contact }),
    });
    const session = (await res.json()) as Record<string, string>;
    expect(session).toMatchObject({
      contactId: contact,
      role: 'visitor',
      relayUrl: urls.relay,
      keysUrl: urls.keys,
    });
    expect(session.token!.split('.')).toHaveLength(3);
  });

  it('lets browsers in from the web origin only, on relay and key service', async () => {
    const upgrade = (origin: string) =>
      new Promise<'open' | number>((resolve, reject) => {
        const ws = new WebSocket(urls.relay!, { headers: { origin } });
        ws.once('open', () => {
          ws.terminate();
          resolve('open');
        });
        ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.once('error', reject);
      });
    expect(await upgrade(urls.web!)).toBe('open');
    expect(await upgrade('https://evil.example')).toBe(403);
    const preflight = (origin: string) =>
      fetch(`${urls.keys}/v1/contact-key`, {
        method: 'OPTIONS',
        headers: {
          origin,
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'authorization,content-type',
        },
      });
    expect((await preflight(urls.web!)).headers.get('access-control-allow-origin')).toBe(urls.web);
    expect((await preflight('https://evil.example')).status).toBe(403);
  });

  it('refuses to serve plain text off loopback, and half a TLS configuration', async () => {
    const open = await latchkey([
      'start',
      '--data',
      join(dir, 'x'),
      '--host',
      '0.0.0.0',
      '--port',
      '0',
    ]);
    expect(open.code).toBe(2);
    expect(open.stderr).toMatch(/^error: USAGE .*without TLS.*--insecure/);
    const half = await latchkey([
      'start',
      '--data',
      join(dir, 'x'),
      '--port',
      '0',
      '--tls-cert',
      'c.pem',
    ]);
    expect(half.code).toBe(2);
  });
});

describe('latchkey token/send/read', () => {
  // Seven `latchkey` processes one after another: each pays Node's start-up, seconds on a busy
  // 2-core machine, so the budget is the processes', not the default 30 s.
  it('chats from two "terminals" and reads the history back', { timeout: 120_000 }, async () => {
    const visitor = await token('cli-1', 'visitor-1');
    const agent = await token('cli-1', 'agent-1', 'agent');
    expect(visitor.split('.')).toHaveLength(3);

    const s1 = await latchkey([
      'send',
      '--token',
      visitor,
      '--relay',
      urls.relay!,
      '--keys',
      urls.keys!,
      'Hello from the visitor',
    ]);
    expect(s1).toMatchObject({ code: 0, stdout: '1\n' });
    // Endpoints come from the data directory of `latchkey start` when no flags are given.
    const s2 = await latchkey([
      'send',
      '--data',
      dir,
      '--token',
      agent,
      'Hi, agent here\nsecond line',
    ]);
    expect(s2).toMatchObject({ code: 0, stdout: '2\n' });

    const text = await latchkey(['read', '--data', dir, '--token', agent]);
    expect(text.code).toBe(0);
    const lines = text.stdout.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^1 \d{4}-\d\d-\d\dT[\d:.]+Z visitor-1: Hello from the visitor$/);
    expect(lines[1]).toMatch(/ agent-1: Hi, agent here\\u000asecond line$/);

    const json = await latchkey([
      'read',
      '--data',
      dir,
      '--token',
      visitor,
      '--json',
      '--since',
      '1',
    ]);
    expect(json.code).toBe(0);
    const rows = json.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows).toEqual([
      {
        seq: 2,
        sender: 'agent-1',
        sentAt: expect.any(Number),
        text: 'Hi, agent here\nsecond line',
      },
    ]);
  });

  it('prints DECRYPT_FAILED for a tampered message and exits 3', async () => {
    const v = await token('cli-tamper', 'v1');
    expect((await latchkey(['send', '--data', dir, '--token', v, 'intact'])).code).toBe(0);
    expect((await latchkey(['send', '--data', dir, '--token', v, 'to be tampered'])).code).toBe(0);
    const db = new Database(join(dir, 'relay', 'messages.db'));
    try {
      const row = db
        .prepare('SELECT envelope FROM messages WHERE contact_id = ? AND seq = 2')
        .get('cli-tamper') as { envelope: string };
      const env = JSON.parse(row.envelope) as { ciphertext: string };
      const c = env.ciphertext;
      env.ciphertext = (c[0] === 'A' ? 'B' : 'A') + c.slice(1);
      db.prepare('UPDATE messages SET envelope = ? WHERE contact_id = ? AND seq = 2').run(
        JSON.stringify(env),
        'cli-tamper',
      );
    } finally {
      db.close();
    }
    const r = await latchkey(['read', '--data', dir, '--token', v, '--json']);
    expect(r.code).toBe(3);
    const rows = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows[0]).toMatchObject({ seq: 1, text: 'intact' });
    expect(rows[1]).toMatchObject({ seq: 2, error: 'DECRYPT_FAILED' });
  });

  it('exits 2 on bad usage and 1 with the error code on a bad token', async () => {
    const usage = await latchkey(['send']);
    expect(usage.code).toBe(2);
    expect(usage.stderr.trim().split('\n')).toHaveLength(1);
    expect(
      (
        await latchkey([
          'token',
          '--contact',
          'c',
          '--participant',
          'p',
          '--role',
          'king',
          '--data',
          dir,
        ])
      ).code,
    ).toBe(2);
    expect((await latchkey(['frobnicate'])).code).toBe(2);
    const v = await token('cli-bad', 'v1');
    const bad = await latchkey(['send', '--data', dir, '--token', v.slice(0, -3) + 'AAA', 'hi']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^error: AUTH_INVALID/);
    const nobody = await latchkey([
      'read',
      '--token',
      v,
      '--relay',
      'ws://127.0.0.1:1',
      '--keys',
      'http://127.0.0.1:1',
    ]);
    expect(nobody.code).toBe(1);
    expect(nobody.stderr).toMatch(/^error: KEY_UNAVAILABLE/);
  });

  it('stops cleanly on SIGTERM', async () => {
    server.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => server.once('exit', r));
    expect(code).toBe(0);
  });
});
