/**
 * A small cluster on one machine out of `latchkey start` (docs/operations.md "A cluster"): two
 * nodes on one PostgreSQL messages database (`--store`), one Redis (`--fanout`), one key
 * database (`--keys-store`) and one webhook outbox key (`--webhook-key-file`), with the same API
 * secret and master key. Both start; a message sent through one node is read through the other;
 * both key services present one service signing key.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { testServices } from '../../../packages/relay/test/_services.ts';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'latchkey.mjs');
const ENV = {
  LATCHKEY_API_SECRET: '5a'.repeat(32),
  LATCHKEY_MASTER_KEY: 'a5'.repeat(32),
};

const dir = mkdtempSync(join(tmpdir(), 'latchkey-start-cluster-'));
const nodes: ChildProcess[] = [];

function latchkey(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { env: { ...process.env, ...ENV }, timeout: 60_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
      },
    );
  });
}

/** Starts one node; resolves with its printed URLs once it printed `ready`. */
function startNode(args: string[]): Promise<Record<string, string>> {
  const child = spawn(process.execPath, [BIN, 'start', ...args], {
    env: { ...process.env, ...ENV },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  nodes.push(child);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const urls: Record<string, string> = {};
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ready; stderr: ${err}`)), 90_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const m = /^(relay|keys|web): (.+)$/.exec(line);
      if (m?.[1] && m[2]) urls[m[1]] = m[2];
      if (line === 'ready') {
        clearTimeout(timer);
        resolve(urls);
      }
    });
    child.once('exit', (code) => reject(new Error(`start exited with ${code}; stderr: ${err}`)));
  });
}

const services = await testServices('latchkey start as a cluster');
afterAll(async () => {
  for (const n of nodes) if (n.exitCode === null) n.kill('SIGTERM');
  await Promise.all(
    nodes.map((n) => (n.exitCode === null ? new Promise((r) => n.once('exit', r)) : undefined)),
  );
  await services?.stop();
  rmSync(dir, { recursive: true, force: true });
});

if (services) {
  describe('two latchkey start nodes on one PostgreSQL and one Redis', () => {
    it('serve one conversation and one service key', async () => {
      const keyFile = join(dir, 'webhooks.key');
      writeFileSync(keyFile, new Uint8Array(32).fill(9), { mode: 0o600 });
      const keyStore = await services.newDatabase();
      const shared = [
        '--port',
        '0',
        '--store',
        services.pgUrl,
        '--fanout',
        services.redisUrl,
        '--keys-store',
        keyStore,
        '--webhook-key-file',
        keyFile,
      ];
      // One after the other: the first creates the schemas and the shared secrets.
      const a = await startNode(['--data', join(dir, 'a'), ...shared]);
      const b = await startNode(['--data', join(dir, 'b'), ...shared]);

      const token = async (participant: string, role: string): Promise<string> => {
        const r = await latchkey([
          'token',
          '--contact',
          'k1',
          '--participant',
          participant,
          '--role',
          role,
        ]);
        expect(r.stderr).toBe('');
        return r.stdout.trim();
      };
      const visitor = await token('v1', 'visitor');
      const agent = await token('a1', 'agent');
      const sent = await latchkey([
        'send',
        '--relay',
        a.relay!,
        '--keys',
        a.keys!,
        '--token',
        visitor,
        'through node a',
      ]);
      expect(sent.stderr).toBe('');
      expect(sent.code).toBe(0);
      const read = await latchkey([
        'read',
        '--relay',
        b.relay!,
        '--keys',
        b.keys!,
        '--token',
        agent,
      ]);
      expect(read.stderr).toBe('');
      expect(read.stdout).toContain('v1: through node a');

      const keyOf = async (url: string) =>
        ((await (await fetch(`${url}/v1/service-key`)).json()) as { publicKey: string }).publicKey;
      expect(await keyOf(b.keys!)).toBe(await keyOf(a.keys!));
    }, 300_000);
  });
}
