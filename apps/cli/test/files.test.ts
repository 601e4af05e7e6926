/**
 * The `latchkey` file commands (README "Command line", issue 18's contract): `send --file` prints
 * the seq; `read` prints a file message as `SEQ TIME SENDER: [file NAME SIZE bytes sha256=HEX]
 * TEXT` and `--json` as `{seq, sender, sentAt, text?, file: {name, size, type, sha256}}`;
 * `download` prints `PATH BYTES sha256=HEX`, and on a tampered blob exits 1 with
 * `error: DECRYPT_FAILED` leaving nothing at PATH. A real `latchkey start` child process.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunkedCiphertextLength } from '@latchkey/crypto/chunked';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'latchkey.mjs');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function latchkey(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

let dir: string;
let work: string;
let server: ChildProcess;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'latchkey-cli-files-'));
  work = await mkdtemp(join(tmpdir(), 'latchkey-cli-files-work-'));
  server = spawn(process.execPath, [BIN, 'start', '--data', dir, '--port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines = createInterface({ input: server.stdout! });
  const seen: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ready: ${seen.join('\n')}`)), 20_000);
    lines.on('line', (line) => {
      seen.push(line);
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
  await rm(work, { recursive: true, force: true });
});

async function tokenFile(contact: string, participant: string, role: string): Promise<string> {
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
  const path = join(work, `${contact}-${participant}.token`);
  await writeFile(path, r.stdout.trim(), { mode: 0o600 });
  return path;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** The relay's stored blob of exactly `size` bytes under the data directory. */
async function blobOf(size: number): Promise<string> {
  const found: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    const p = join(e.parentPath, e.name);
    if (e.isFile() && p.includes('.files') && (await stat(p)).size === size) found.push(p);
  }
  expect(found).toHaveLength(1);
  return found[0]!;
}

describe('latchkey send --file, read, download', { timeout: 120_000 }, () => {
  it('sends a file with a caption, shows it in read and read --json, downloads it exactly', async () => {
    const visitor = await tokenFile('cf1', 'v1', 'visitor');
    const agent = await tokenFile('cf1', 'a1', 'agent');
    const data = new Uint8Array(70_000).map((_, i) => (i * 31) % 251);
    const src = join(work, 'photo of part.png');
    await writeFile(src, data);

    const sent = await latchkey([
      'send',
      '--data',
      dir,
      '--token-file',
      visitor,
      '--file',
      src,
      'the broken part',
    ]);
    expect(sent.stderr).toBe('');
    expect(sent.code).toBe(0);
    const seq = Number(sent.stdout.trim());
    expect(seq).toBeGreaterThan(0);

    const read = await latchkey(['read', '--data', dir, '--token-file', agent]);
    expect(read.code).toBe(0);
    expect(read.stdout).toMatch(
      new RegExp(
        `^${seq} \\d{4}-\\d\\d-\\d\\dT[0-9:.]+Z v1: \\[file photo of part\\.png 70000 bytes sha256=${sha256(data)}\\] the broken part$`,
        'm',
      ),
    );
    const json = await latchkey(['read', '--data', dir, '--token-file', agent, '--json']);
    const line = JSON.parse(json.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
    expect(line).toEqual({
      seq,
      sender: 'v1',
      sentAt: expect.any(Number),
      text: 'the broken part',
      file: { name: 'photo of part.png', size: 70_000, type: 'image/png', sha256: sha256(data) },
    });

    const out = join(work, 'downloaded.png');
    const dl = await latchkey([
      'download',
      '--data',
      dir,
      '--token-file',
      agent,
      '--seq',
      String(seq),
      '--out',
      out,
    ]);
    expect(dl.stderr).toBe('');
    expect(dl.code).toBe(0);
    expect(dl.stdout.trim()).toBe(`${out} 70000 sha256=${sha256(data)}`);
    expect(new Uint8Array(await readFile(out))).toEqual(data);
  });

  it('a file without caption reads as the bare file tag; the JSON has no text', async () => {
    const visitor = await tokenFile('cf2', 'v1', 'visitor');
    const src = join(work, 'notes.txt');
    await writeFile(src, 'hello');
    const sent = await latchkey(['send', '--data', dir, '--token-file', visitor, '--file', src]);
    expect(sent.code).toBe(0);
    const json = await latchkey(['read', '--data', dir, '--token-file', visitor, '--json']);
    expect(JSON.parse(json.stdout.trim())).toEqual({
      seq: Number(sent.stdout.trim()),
      sender: 'v1',
      sentAt: expect.any(Number),
      file: {
        name: 'notes.txt',
        size: 5,
        type: 'text/plain',
        sha256: sha256(new TextEncoder().encode('hello')),
      },
    });
    const read = await latchkey(['read', '--data', dir, '--token-file', visitor]);
    expect(read.stdout.trim()).toMatch(/v1: \[file notes\.txt 5 bytes sha256=[0-9a-f]{64}\]$/);
  });

  it('a tampered blob: download exits 1 with DECRYPT_FAILED and leaves nothing at PATH', async () => {
    const visitor = await tokenFile('cf3', 'v1', 'visitor');
    const data = new Uint8Array(40_000).fill(7);
    const src = join(work, 'big.bin');
    await writeFile(src, data);
    const sent = await latchkey(['send', '--data', dir, '--token-file', visitor, '--file', src]);
    expect(sent.code).toBe(0);
    const blob = await blobOf(chunkedCiphertextLength(40_000));
    const ct = await readFile(blob);
    ct.writeUInt8(ct.readUInt8(20_000) ^ 0x40, 20_000);
    await writeFile(blob, ct);

    const outDir = await mkdtemp(join(work, 'out-'));
    const out = join(outDir, 'big.bin');
    const dl = await latchkey([
      'download',
      '--data',
      dir,
      '--token-file',
      visitor,
      '--seq',
      sent.stdout.trim(),
      '--out',
      out,
    ]);
    expect(dl.code).toBe(1);
    expect(dl.stderr).toMatch(/^error: DECRYPT_FAILED /);
    expect(dl.stdout).toBe('');
    expect(await readdir(outDir)).toEqual([]);
  });

  it('download refuses a message without a file, and bad flags', async () => {
    const visitor = await tokenFile('cf4', 'v1', 'visitor');
    const sent = await latchkey(['send', '--data', dir, '--token-file', visitor, 'just text']);
    const out = join(work, 'none');
    const dl = await latchkey([
      'download',
      '--data',
      dir,
      '--token-file',
      visitor,
      '--seq',
      sent.stdout.trim(),
      '--out',
      out,
    ]);
    expect(dl.code).toBe(1);
    expect(dl.stderr).toMatch(/^error: NOT_FOUND /);
    expect(
      (await latchkey(['download', '--data', dir, '--token-file', visitor, '--out', out])).code,
    ).toBe(2);
    expect(
      (
        await latchkey([
          'download',
          '--data',
          dir,
          '--token-file',
          visitor,
          '--seq',
          '0',
          '--out',
          out,
        ])
      ).code,
    ).toBe(2);
    const missing = await latchkey([
      'send',
      '--data',
      dir,
      '--token-file',
      visitor,
      '--file',
      join(work, 'nope'),
    ]);
    expect(missing.code).toBe(2);
  });
});
