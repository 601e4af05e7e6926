/**
 * `latchkey start --scanner --clamd unix:SOCKET` (docs/operations.md "Scanning attachments"): the
 * scanner runs beside relay and key service, registered with the relay, and prints
 * `scanner: URL` after `agent:`; a file sent with `latchkey send --file` is judged: the infected
 * one is refused by `latchkey download` (FORBIDDEN) and shows its verdict in `latchkey read`, the
 * clean one downloads. A real clamd with a signature database made by the test (_clamd.ts).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { INFECTED_FILE, REPORTED_SIGNATURE, startClamd } from './_clamd.ts';

const BIN = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'apps',
  'cli',
  'bin',
  'latchkey.mjs',
);

const clamd = await startClamd('latchkey start --scanner', { streamMaxLength: 2 * 1024 * 1024 });

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function latchkey(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

let server: ChildProcess | undefined;
const dirs: string[] = [];

afterAll(async () => {
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    await new Promise((r) => server!.once('exit', r));
  }
  await clamd?.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe.skipIf(clamd === null)('latchkey start --scanner', { timeout: 180_000 }, () => {
  it('prints the scanner URL; files are judged; an infected one cannot be downloaded', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'latchkey-start-scanner-'));
    dirs.push(dir);
    server = spawn(
      process.execPath,
      [BIN, 'start', '--data', dir, '--port', '0', '--scanner', '--clamd', `unix:${clamd!.socket}`],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const lines: string[] = [];
    const rl = createInterface({ input: server.stdout! });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ready: ${lines.join('\n')}`)), 60_000);
      rl.on('line', (line) => {
        lines.push(line);
        if (line === 'ready') {
          clearTimeout(timer);
          resolve();
        }
      });
      server!.once('exit', (code) => reject(new Error(`start exited with ${code}`)));
    });
    const agentAt = lines.findIndex((l) => l.startsWith('agent: '));
    const scannerAt = lines.findIndex((l) => l.startsWith('scanner: '));
    expect(lines[scannerAt]).toMatch(/^scanner: http:\/\/127\.0\.0\.1:\d+/);
    expect(scannerAt).toBe(agentAt + 1);

    const mint = async (p: string, role: string): Promise<string> => {
      const r = await latchkey([
        'token',
        '--data',
        dir,
        '--contact',
        'cs1',
        '--participant',
        p,
        '--role',
        role,
      ]);
      const f = join(dir, `${p}.token`);
      await writeFile(f, r.stdout.trim(), { mode: 0o600 });
      return f;
    };
    const visitor = await mint('v1', 'visitor');
    const agent = await mint('a1', 'agent');
    const bad = join(dir, 'bad.bin');
    const good = join(dir, 'good.txt');
    await writeFile(bad, INFECTED_FILE);
    await writeFile(good, 'a perfectly ordinary file\n');
    const sentBad = await latchkey(['send', '--data', dir, '--token-file', visitor, '--file', bad]);
    const sentGood = await latchkey([
      'send',
      '--data',
      dir,
      '--token-file',
      visitor,
      '--file',
      good,
    ]);
    expect([sentBad.code, sentGood.code]).toEqual([0, 0]);

    // Wait for both verdicts (the scanner posts them as messages of its own).
    let read: Run = { code: -1, stdout: '', stderr: '' };
    for (let i = 0; i < 120; i++) {
      read = await latchkey(['read', '--data', dir, '--token-file', agent]);
      if ((read.stdout.match(/\[scan /g) ?? []).length >= 2) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(read.stdout).toContain(`[scan infected ref=`);
    expect(read.stdout).toContain(`signature=${REPORTED_SIGNATURE}]`);
    expect(read.stdout).toContain('[scan clean ref=');

    const out = join(dir, 'out');
    const dlBad = await latchkey([
      'download',
      '--data',
      dir,
      '--token-file',
      agent,
      '--seq',
      sentBad.stdout.trim(),
      '--out',
      out,
    ]);
    expect(dlBad.code).toBe(1);
    expect(dlBad.stderr).toMatch(/^error: FORBIDDEN /);
    const dlGood = await latchkey([
      'download',
      '--data',
      dir,
      '--token-file',
      agent,
      '--seq',
      sentGood.stdout.trim(),
      '--out',
      out,
    ]);
    expect(dlGood.code).toBe(0);
    expect(dlGood.stdout).toMatch(/ 26 sha256=[0-9a-f]{64}\n$/);
  });

  it('refuses --clamd without --scanner', async () => {
    const r = await latchkey(['start', '--data', join(tmpdir(), 'never'), '--clamd', 'unix:/x']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--clamd goes with --scanner/);
  });
});
