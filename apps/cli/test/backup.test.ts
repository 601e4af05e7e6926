/**
 * `latchkey backup` / `latchkey restore` end to end (README "Command line", docs/guarantees.md
 * "Operations"): a backup taken while `latchkey start` runs and a chat goes on is a consistent
 * snapshot (every message acked before it began, seqs gap-free); restored into a new data
 * directory, `latchkey start` + `latchkey read` there show that history. Messages and keys are
 * separate artefacts (the message backup holds no key). Restore checks the manifest and refuses
 * a target that already holds the backup's files without --force.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LatchkeyClient, type WebSocketConstructor } from '@latchkey/client';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'latchkey.mjs');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function latchkey(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    const env = { ...process.env };
    delete env.LATCHKEY_API_SECRET;
    delete env.LATCHKEY_MASTER_KEY;
    execFile(process.execPath, [BIN, ...args], { env, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

interface Started {
  child: ChildProcess;
  urls: Record<string, string>;
}

async function startLatchkey(data: string): Promise<Started> {
  const env = { ...process.env };
  delete env.LATCHKEY_API_SECRET;
  delete env.LATCHKEY_MASTER_KEY;
  const child = spawn(process.execPath, [BIN, 'start', '--data', data, '--port', '0'], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const urls: Record<string, string> = {};
  const lines: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`start did not print ready: ${lines.join('\n')}`)),
      25_000,
    );
    createInterface({ input: child.stdout! }).on('line', (line) => {
      lines.push(line);
      const m = /^(relay|keys): (.+)$/.exec(line);
      if (m?.[1] && m[2]) urls[m[1]] = m[2];
      if (line === 'ready') {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`start exited with ${code}`)));
  });
  return { child, urls };
}

async function stop(s: Started | undefined): Promise<void> {
  if (!s || s.child.exitCode !== null) return;
  const exited = new Promise((r) => s.child.once('exit', r));
  s.child.kill('SIGTERM');
  await exited;
}

let root: string;
let live: Started | undefined;
let restored: Started | undefined;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'latchkey-backup-'));
});

afterAll(async () => {
  await stop(live);
  await stop(restored);
  await rm(root, { recursive: true, force: true });
});

async function token(data: string, participant: string, role: string): Promise<string> {
  const r = await latchkey([
    'token',
    '--data',
    data,
    '--contact',
    'backup-1',
    '--participant',
    participant,
    '--role',
    role,
  ]);
  expect(r.code).toBe(0);
  return r.stdout.trim();
}

describe('latchkey backup and restore', () => {
  it('backs up online while a chat goes on; the restored data directory serves that history', async () => {
    const data = join(root, 'data');
    const out = join(root, 'backup');
    const keysOut = join(root, 'backup-keys');
    live = await startLatchkey(data);
    const sender = await LatchkeyClient.connect({
      relayUrl: live.urls.relay!,
      keysUrl: live.urls.keys!,
      token: await token(data, 'visitor-1', 'visitor'),
      WebSocket: WebSocket as unknown as WebSocketConstructor,
    });
    const acked: { seq: number; text: string }[] = [];
    let chatting = true;
    const chat = (async () => {
      for (let n = 0; chatting; n++) {
        const text = `message #${n}`;
        const r = await sender.send(text);
        acked.push({ seq: r.seq, text });
        await new Promise((res) => setTimeout(res, 10)); // a busy chat, under the relay's rate limit
      }
    })();
    while (acked.length < 40) await new Promise((r) => setTimeout(r, 20));

    const ackedBefore = acked.length;
    const b = await latchkey([
      'backup',
      '--data',
      data,
      '--out',
      out,
      '--keys-out',
      keysOut,
      '--include-secrets',
    ]);
    const ackedAfter = acked.length;
    chatting = false;
    await chat;
    sender.close();
    expect(b.stderr).toBe('');
    expect(b.code).toBe(0);
    const lines = b.stdout.trim().split('\n');
    expect(lines.at(-1)).toBe(`backup: ${out}`);
    expect(lines.at(-2)).toBe(`keys-backup: ${keysOut}`);
    // The message backup holds the messages only; keys and secrets are in the key backup.
    expect((await readdir(out)).sort()).toEqual(['manifest.json', 'relay']);
    expect((await readdir(join(keysOut, 'keys'))).sort()).toEqual([
      'access-log.key',
      'access.db',
      'keys.db',
      'service-signing.key',
    ]);
    for (const p of [
      'relay/messages.db',
      'keys/keys.db',
      'keys/access.db',
      'keys/service-signing.key',
      'api-secret',
      'master.key',
    ]) {
      expect(lines.some((l) => new RegExp(`^${p} \\d+ sha256=[0-9a-f]{64}$`).test(l))).toBe(true);
    }
    const manifest = JSON.parse(readFileSync(join(keysOut, 'manifest.json'), 'utf8')) as {
      contents: string;
      includesSecrets: boolean;
    };
    expect(manifest).toMatchObject({ contents: 'keys', includesSecrets: true });
    expect(JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'))).toMatchObject({
      contents: 'messages',
      includesSecrets: false,
    });
    expect(ackedAfter).toBeGreaterThan(ackedBefore); // the chat really went on during the backup

    // Restore into an empty directory and read the history there.
    const target = join(root, 'restored');
    const r = await latchkey(['restore', '--from', out, '--data', target]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n').at(-1)).toBe(`restored: ${target}`);
    const rk = await latchkey(['restore', '--from', keysOut, '--data', target]);
    expect(rk.stderr).toBe('');
    expect(rk.code).toBe(0);
    await stop(live);
    live = undefined;
    restored = await startLatchkey(target);
    const read = await latchkey([
      'read',
      '--data',
      target,
      '--token',
      await token(target, 'agent-1', 'agent'),
      '--json',
    ]);
    expect(read.stderr).toBe('');
    expect(read.code).toBe(0);
    const rows = read.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { seq: number; text: string; sender: string });
    // A consistent snapshot: gap-free from 1, every message acked before the backup began is
    // there, each equal to what was acked at that seq, and nothing acked after it ended.
    expect(rows.map((x) => x.seq)).toEqual(Array.from({ length: rows.length }, (_, i) => i + 1));
    expect(rows.length).toBeGreaterThanOrEqual(ackedBefore);
    expect(rows.length).toBeLessThanOrEqual(ackedAfter + 1);
    for (const row of rows) expect(row.text).toBe(acked.find((a) => a.seq === row.seq)?.text);
  }, 90_000);

  it('restore verifies the manifest and refuses a non-empty target unless --force; usage errors exit 2', async () => {
    const out = join(root, 'backup');
    const target = join(root, 'restored'); // not empty (previous test)
    const refused = await latchkey(['restore', '--from', out, '--data', target]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^error: CONFLICT .*not empty/);

    // A tampered copy of the backup is refused before anything is written.
    const bad = join(root, 'tampered');
    await mkdir(join(bad, 'relay'), { recursive: true });
    await mkdir(join(bad, 'keys'), { recursive: true });
    for (const f of ['manifest.json', 'relay/messages.db'])
      writeFileSync(join(bad, f), readFileSync(join(out, f)));
    const db = readFileSync(join(bad, 'relay/messages.db'));
    db[db.length - 10] = (db[db.length - 10] ?? 0) ^ 1;
    writeFileSync(join(bad, 'relay/messages.db'), db);
    const empty = join(root, 'empty');
    const t = await latchkey(['restore', '--from', bad, '--data', empty]);
    expect(t.code).toBe(1);
    expect(t.stderr).toMatch(
      /^error: BAD_REQUEST backup file relay\/messages.db does not match the manifest/,
    );
    await expect(readdir(empty)).rejects.toThrow();

    // Forced over a stopped data directory.
    await stop(restored);
    restored = undefined;
    const forced = await latchkey(['restore', '--from', out, '--data', target, '--force']);
    expect(forced.code).toBe(0);

    expect((await latchkey(['backup', '--data', target])).code).toBe(2);
    // Secrets never travel with the messages; the two artefacts never share a directory.
    expect(
      (await latchkey(['backup', '--data', target, '--out', join(root, 'x'), '--include-secrets']))
        .code,
    ).toBe(2);
    expect(
      (
        await latchkey([
          'backup',
          '--data',
          target,
          '--out',
          join(root, 'x'),
          '--keys-out',
          join(root, 'x', 'k'),
        ])
      ).code,
    ).toBe(2);
    expect((await latchkey(['restore', '--data', target])).code).toBe(2);
    const again = await latchkey(['backup', '--data', target, '--out', out]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^error: CONFLICT /);
  }, 60_000);
});
