/**
 * `latchkey keys audit --verify-stream FILE` (docs/siem.md): a file of what a SIEM received
 * (syslog lines, some with their octet count, webhook bodies, other programs' lines) verifies
 * with and without the log key; a removed or edited record is exit 1 TAMPERED. And `latchkey
 * start --syslog-url` refuses a plaintext URL and a URL without a CA (exit 2).
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  KeyAccessLog,
  accessEventData,
  formatAccessSyslog,
  frameOctetCounted,
  type ChainedAccessRecord,
} from '@latchkey/keys';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'latchkey.mjs');

function latchkey(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

let dir: string;
let records: ChainedAccessRecord[];
const key = new Uint8Array(32).fill(9);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'latchkey-verify-stream-'));
  writeFileSync(join(dir, 'log.key'), key, { mode: 0o600 });
  const log = new KeyAccessLog({ path: join(dir, 'keys.db'), key });
  const outcomes = ['granted', 'denied', 'unavailable', 'destroyed'] as const;
  for (let i = 0; i < 6; i++)
    log.append({
      contactId: 'c-9',
      epoch: i,
      participantId: `p${i}`,
      time: 1_700_000_000_000 + i,
      outcome: outcomes[i % 4] ?? 'granted',
    });
  records = log.listChained(0);
  log.close();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const syslog = (r: ChainedAccessRecord): string =>
  formatAccessSyslog(r, { hostname: 'keys', procId: 1, alg: 'hmac-sha256' });

describe('keys audit --verify-stream', () => {
  it('verifies a mixed file, with and without the log key; catches a removed or edited record', async () => {
    const lines = records.map((r, i) =>
      i % 3 === 0
        ? syslog(r)
        : i % 3 === 1
          ? frameOctetCounted(syslog(r)).toString()
          : JSON.stringify({ type: 'x', sequence: i, data: accessEventData(r, 'hmac-sha256') }),
    );
    const file = join(dir, 'received.log');
    writeFileSync(
      file,
      [...lines, lines[2], '<13>1 - host sshd 77 - - Accepted publickey', ''].join('\n'),
    );
    const keyed = await latchkey([
      ...['keys', 'audit', '--verify-stream', file, '--log-key', join(dir, 'log.key')],
    ]);
    const head = `${records.length}:${records.at(-1)?.hash ?? ''}`;
    expect(keyed).toMatchObject({ code: 0, stderr: '' });
    expect(keyed.stdout).toBe(
      `verified: 6 records (hashes recomputed), 1 duplicates, 1 other lines, head ${head}\n`,
    );
    const links = await latchkey(['keys', 'audit', '--verify-stream', file, '--head', head]);
    expect(links.stdout).toMatch(/^verified: 6 records \(links only\)/);

    const cut = join(dir, 'cut.log');
    writeFileSync(cut, lines.filter((_, i) => i !== 3).join('\n'));
    expect(await latchkey(['keys', 'audit', '--verify-stream', cut])).toMatchObject({
      code: 1,
      stderr: 'error: TAMPERED access stream broken at record 4: record 4 missing\n',
    });
    const edited = join(dir, 'edited.log');
    writeFileSync(
      edited,
      lines.map((l) => l.replace('participant="p3"', 'participant="p7"')).join('\n'),
    );
    const e = await latchkey([
      ...['keys', 'audit', '--verify-stream', edited, '--log-key', join(dir, 'log.key')],
    ]);
    expect(e).toMatchObject({ code: 1 });
    expect(e.stderr).toBe(
      'error: TAMPERED access stream broken at record 4: record altered (hash does not match)\n',
    );
  }, 120_000);

  it('start refuses a plaintext syslog URL and one without a CA', async () => {
    const data = join(dir, 'data');
    const plain = await latchkey([
      'start',
      '--data',
      data,
      '--port',
      '0',
      '--syslog-url',
      'tcp://127.0.0.1:514',
    ]);
    expect(plain.code).toBe(2);
    expect(plain.stderr).toMatch(/^error: USAGE --syslog-url: .*plaintext/m);
    const noCa = await latchkey([
      'start',
      '--data',
      data,
      '--port',
      '0',
      '--syslog-url',
      'tls://127.0.0.1:6514',
    ]);
    expect(noCa.code).toBe(2);
    expect(noCa.stderr).toMatch(/^error: USAGE --syslog-url needs --syslog-ca FILE/m);
  }, 60_000);
});
