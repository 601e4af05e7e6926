/**
 * The admin subcommands end to end: a real `latchkey start` child process, participants
 * chatting through `send`/`read`, then `contacts`, `kick`, `transfer`, `invite` and `close`
 * from other processes, with their output lines and exit codes.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
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
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
      },
    );
  });
}

let dir: string;
let server: ChildProcess;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'latchkey-cli-admin-'));
  server = spawn(process.execPath, [BIN, 'start', '--data', dir, '--port', '0'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const lines = createInterface({ input: server.stdout! });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('start did not print ready')), 20_000);
    lines.on('line', (line) => {
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

const send = (t: string, text: string): Promise<Run> =>
  latchkey(['send', '--data', dir, '--token', t, text]);
const read = (t: string): Promise<Run> => latchkey(['read', '--data', dir, '--token', t]);

describe('latchkey admin commands', () => {
  it('contacts, kick, transfer, invite and close, key service first then relay', async () => {
    const v = await token('adm-1', 'visitor-1');
    const a = await token('adm-1', 'agent-1', 'agent');
    expect((await send(v, 'hello')).code).toBe(0);
    expect((await send(a, 'hi there')).code).toBe(0);

    const list = await latchkey(['contacts', '--data', dir]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(
      /^adm-1 open expires=\S+ participants=visitor-1:visitor:active,agent-1:agent:active$/m,
    );
    const json = await latchkey(['contacts', '--data', dir, '--json', '--state', 'open']);
    const parsed = json.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { contactId: string });
    expect(parsed.map((c) => c.contactId)).toContain('adm-1');

    // transfer: the leaver can no longer read; the newcomer reads the whole history
    const moved = await latchkey([
      'transfer',
      '--data',
      dir,
      '--contact',
      'adm-1',
      '--from',
      'agent-1',
      '--to',
      'agent-2',
    ]);
    expect(moved).toMatchObject({
      code: 0,
      stdout: 'transferred adm-1 from agent-1 to agent-2 (key rotated to epoch 1)\n',
    });
    const leaver = await read(a);
    expect(leaver.code).toBe(1);
    expect(leaver.stderr).toMatch(/^error: FORBIDDEN/);
    const b = await token('adm-1', 'agent-2', 'agent');
    const history = await read(b);
    expect(history.code).toBe(0);
    expect(history.stdout).toMatch(/^1 \S+ visitor-1: hello\n2 \S+ agent-1: hi there\n$/);
    expect((await send(b, 'agent 2 here')).stdout).toBe('3\n');

    // invite a supervisor: reads, cannot send
    expect(
      (
        await latchkey([
          'invite',
          '--data',
          dir,
          '--contact',
          'adm-1',
          '--participant',
          'sup-1',
          '--role',
          'supervisor',
        ])
      ).stdout,
    ).toBe('invited sup-1 to adm-1 as supervisor\n');
    const s = await token('adm-1', 'sup-1', 'supervisor');
    expect((await read(s)).stdout.split('\n').filter(Boolean)).toHaveLength(3);

    // kick the visitor
    const kicked = await latchkey([
      'kick',
      '--data',
      dir,
      '--contact',
      'adm-1',
      '--participant',
      'visitor-1',
    ]);
    expect(kicked).toMatchObject({
      code: 0,
      stdout: 'kicked visitor-1 from adm-1 (key rotated to epoch 2)\n',
    });
    expect((await send(v, 'still here?')).stderr).toMatch(/^error: FORBIDDEN/);

    // close: no more sends, history readable
    expect((await latchkey(['close', '--data', dir, '--contact', 'adm-1'])).stdout).toBe(
      'closed adm-1\n',
    );
    const refused = await send(b, 'after close');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^error: CONTACT_CLOSED/);
    expect((await read(b)).stdout.split('\n').filter(Boolean)).toHaveLength(3);
    expect((await latchkey(['contacts', '--data', dir, '--state', 'closed'])).stdout).toMatch(
      /^adm-1 closed /m,
    );
  }, 150_000); // about 30 s idle; a dozen CLI processes, so room for a busy 2-core machine

  it('reports usage errors with exit 2 and a wrong admin key with exit 1', async () => {
    expect((await latchkey(['kick', '--data', dir, '--contact', 'adm-2'])).code).toBe(2);
    expect(
      (
        await latchkey([
          'invite',
          '--data',
          dir,
          '--contact',
          'adm-2',
          '--participant',
          'x',
          '--role',
          'visitor',
        ])
      ).code,
    ).toBe(2);
    expect((await latchkey(['contacts', '--data', dir, '--state', 'weird'])).code).toBe(2);
    const wrong = await latchkey(['close', '--data', dir, '--contact', 'adm-2'], {
      LATCHKEY_ADMIN_KEY: `default:${Buffer.alloc(32, 1).toString('base64url')}`,
    });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toBe(
      'error: AUTH_INVALID key service: invalid admin API key (nothing applied)\n',
    );
  });
});
