/**
 * The reference key manager as a real child process (src/main.ts): the key service's HTTP
 * adapter talks to it, survives it being killed (KEY_UNAVAILABLE, nothing lost) and recovers
 * when it is started again.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { keyManagerContract } from '../../../packages/keys/test/contract.ts';
import { bytesContain, codeOf, dbFiles, tempDir } from '../../../packages/keys/test/_helpers.ts';
import { openHttpKeyManager } from '@latchkey/keys';
import { clientOptions, SECRET } from './_setup.ts';

const MAIN = join(import.meta.dirname, '..', 'src', 'main.ts');
let dir: string;
let cleanup: () => void;
const children: ChildProcess[] = [];

beforeEach(() => {
  ({ dir, cleanup } = tempDir('latchkey-kms-proc-'));
});
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
  cleanup();
});

/** One key manager process shared by the contract suite below (it keeps no per-test state). */
const shared = tempDir('latchkey-kms-shared-');
let sharedKms: Promise<{ child: ChildProcess; url: string }> | undefined;
afterAll(async () => {
  if (sharedKms !== undefined) {
    const { child } = await sharedKms;
    child.kill('SIGTERM');
    await exited(child);
  }
  shared.cleanup();
});

/** A key of its own per test: a shred in one test makes the key manager refuse that contact. */
let kekSerial = 0;
keyManagerContract('http (wrap model, reference KMS in a child process)', async () => {
  sharedKms ??= startChild(0, join(shared.dir, 'kms'), []);
  const keyId = `latchkey-kek-${++kekSerial}`;
  const { url } = await sharedKms;
  const { dir: d, cleanup: c } = tempDir();
  const path = join(d, 'keys.db');
  return {
    backend: 'http',
    open: () => openHttpKeyManager({ ...clientOptions(url), keyId, path }),
    files: () => [...dbFiles(path), ...dbFiles(join(shared.dir, 'kms', 'kms.db'))],
    teardown: async () => c(),
  };
});

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Starts src/main.ts and resolves with its URL once it printed `kms: URL`. */
async function startChild(
  port: number,
  data = join(dir, 'kms'),
  track = children,
): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', MAIN, '--data', data, '--port', String(port)],
    {
      env: {
        ...process.env,
        KMS_HMAC_SECRET: Buffer.from(SECRET).toString('hex'),
        KMS_CLIENT_ID: 'latchkey',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  track.push(child);
  let err = '';
  child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`kms did not start: ${err}`)), 20_000);
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /kms: (http:\/\/\S+)/.exec(out);
      if (m?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`kms exited with ${code}: ${err}`));
    });
  });
  return { child, url };
}

function exited(child: ChildProcess): Promise<number | null> {
  return child.exitCode !== null
    ? Promise.resolve(child.exitCode)
    : new Promise((r) => child.once('exit', (code) => r(code)));
}

describe('reference key manager in a child process', () => {
  it('serves the HTTP adapter, is killed and restarted, and every key survives', async () => {
    const port = await freePort();
    let { child, url } = await startChild(port);
    const path = join(dir, 'keys', 'keys.db');
    const km = await openHttpKeyManager({
      ...clientOptions(url, { breakerThreshold: 100 }),
      keyId: 'latchkey-kek',
      path,
    });
    try {
      const keys: Uint8Array[] = [];
      for (let i = 0; i < 5; i++) {
        keys.push((await km.getContentKey(`c${i}`)).key);
        await km.rotate(`c${i}`);
        keys.push((await km.getContentKey(`c${i}`)).key);
      }
      child.kill('SIGKILL');
      await exited(child);
      expect(await codeOf(km.getContentKey('c0', 0))).toBe('KEY_UNAVAILABLE');
      expect(await codeOf(km.rotate('c0'))).toBe('KEY_UNAVAILABLE');
      expect((await km.health()).status).toBe('degraded');

      ({ child, url } = await startChild(port));
      expect((await km.getContentKey('c0', 0)).key).toEqual(keys[0]);
      expect((await km.getContentKey('c4', 1)).key).toEqual(keys[9]);
      expect(await km.currentEpoch('c0')).toBe(1);
      expect(await km.rotate('c0')).toBe(2);
      expect((await km.health()).status).toBe('ok');

      child.kill('SIGTERM');
      expect(await exited(child)).toBe(0);
      await km.close();
      // Neither the key store nor the key manager's files hold a content key in the clear.
      const files = [...dbFiles(path), ...dbFiles(join(dir, 'kms', 'kms.db'))];
      for (const k of keys) expect(bytesContain(files, k)).toBeUndefined();
      // The key manager audited the unwraps, with contact, epoch and reason.
      const raw = new Database(join(dir, 'kms', 'kms.db'), { readonly: true });
      const unwraps = raw
        .prepare<[], { n: number }>(
          "SELECT count(*) AS n FROM audit WHERE operation = 'unwrap' AND reason = 'fetch' AND outcome = 'ok'",
        )
        .get();
      raw.close();
      expect(unwraps?.n).toBeGreaterThanOrEqual(12);
    } finally {
      await km.close();
    }
  });

  it('refuses to start without a secret (exit 1) and on bad usage (exit 2)', async () => {
    const noSecret = spawn(
      process.execPath,
      ['--import', 'tsx', MAIN, '--data', join(dir, 'kms')],
      {
        env: { ...process.env, KMS_HMAC_SECRET: '' },
        stdio: 'ignore',
      },
    );
    expect(await exited(noSecret)).toBe(1);
    const usage = spawn(process.execPath, ['--import', 'tsx', MAIN, '--bogus'], {
      stdio: 'ignore',
    });
    expect(await exited(usage)).toBe(2);
  });
});
