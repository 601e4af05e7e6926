/**
 * Offline `latchkey keys rewrap` with the wrapped keys on PostgreSQL (`--keys-store`): every
 * content key (and what the key service keeps under the master key) re-wrapped under the new
 * master key, the keys unchanged; without `--keys-store` it refuses rather than replace
 * master.key over keys it cannot see; a run repeated after it finished changes nothing.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { openKeyService } from '@latchkey/keyd';
import { resolveMasterKey } from '@latchkey/keys';
import { LatchkeyError } from '@latchkey/protocol';
import { mintToken } from '@latchkey/tokens';
import { testPostgres } from '../../../packages/keys/test/_postgres.ts';
import { fetchSealedKey } from '../../keyd/test/_sealed-key.ts';
import { keysRewrap } from '../src/keys-rewrap.ts';
import { UsageError } from '../src/usage.ts';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'latchkey.mjs');
const apiSecret = new Uint8Array(32).fill(3);
const CONTACTS = ['r1', 'r2', 'r3'];
const dirs: string[] = [];

function latchkey(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

/** The contacts' keys as a key service over `dataDir` and `keyStoreUrl` hands them out. */
async function keysOf(dataDir: string, keyStoreUrl: string | undefined, masterKey: Uint8Array) {
  const s = await openKeyService({
    dataDir,
    host: '127.0.0.1',
    port: 0,
    apiSecret,
    masterKey,
    ...(keyStoreUrl === undefined ? {} : { keyStoreUrl }),
    log: () => undefined,
    shredCompleteEveryMs: 0,
  });
  try {
    const keys: string[] = [];
    for (const contactId of CONTACTS) {
      const token = await mintToken(apiSecret, {
        contactId,
        participantId: 'p1',
        role: 'agent',
        ttlSeconds: 60,
      });
      const res = await fetchSealedKey(s.url, token, 'p1');
      expect(res.status).toBe(200);
      keys.push(res.key!);
    }
    return keys;
  } finally {
    await s.close();
  }
}

describe('latchkey keys rewrap --offline on SQLite', () => {
  it('still re-wraps keys/keys.db', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'latchkey-rewrap-sqlite-'));
    dirs.push(dir);
    const masterFile = join(dir, 'master.key');
    const old = resolveMasterKey({ env: {}, file: masterFile }).key;
    const before = await keysOf(dir, undefined, old);
    const lines: string[] = [];
    expect(await keysRewrap({ data: dir, offline: true }, (l) => lines.push(l), {})).toBe(0);
    expect(lines).toEqual([
      `master-key: ${masterFile} (replaced)`,
      `rewrapped ${CONTACTS.length} content keys (offline)`,
    ]);
    expect(await keysOf(dir, undefined, new Uint8Array(readFileSync(masterFile)))).toEqual(before);
  }, 60_000);
});

const server = await testPostgres('keys rewrap on a PostgreSQL key store');
afterAll(async () => {
  await server?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

if (server) {
  describe('latchkey keys rewrap --offline --keys-store', () => {
    it('re-wraps the keys on PostgreSQL under a new master key, the keys unchanged', async () => {
      const keyStoreUrl = await server.newDatabase();
      const dir = mkdtempSync(join(tmpdir(), 'latchkey-rewrap-pg-'));
      dirs.push(dir);
      const masterFile = join(dir, 'master.key');
      const old = resolveMasterKey({ env: {}, file: masterFile }).key;
      const before = await keysOf(dir, keyStoreUrl, old);

      // Without --keys-store: refused, master.key untouched (keys.db holds no wrapped keys).
      await expect(keysRewrap({ data: dir, offline: true }, () => undefined, {})).rejects.toThrow(
        UsageError,
      );
      expect(new Uint8Array(readFileSync(masterFile))).toEqual(old);

      const run = await latchkey([
        'keys',
        'rewrap',
        '--offline',
        '--data',
        dir,
        '--keys-store',
        keyStoreUrl,
      ]);
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      expect(run.stdout).toBe(
        `master-key: ${masterFile} (replaced)\nrewrapped ${CONTACTS.length} content keys (offline)\n`,
      );
      const next = new Uint8Array(readFileSync(masterFile));
      expect(next).not.toEqual(old);

      expect(await keysOf(dir, keyStoreUrl, next)).toEqual(before);
      const refused = await keysOf(dir, keyStoreUrl, old).catch((e: unknown) => e);
      expect(LatchkeyError.is(refused, 'KEY_UNAVAILABLE')).toBe(true);

      // Run again with both keys given (as after a run that stopped before replacing the file):
      // everything is under the new key already, nothing to do.
      const lines: string[] = [];
      const env = {
        LATCHKEY_MASTER_KEY: Buffer.from(old).toString('hex'),
        LATCHKEY_NEW_MASTER_KEY: Buffer.from(next).toString('hex'),
        LATCHKEY_KEYS_STORE: keyStoreUrl,
      };
      expect(await keysRewrap({ data: dir, offline: true }, (l) => lines.push(l), env)).toBe(0);
      expect(lines.at(-1)).toBe('rewrapped 0 content keys (offline)');
      expect(await keysOf(dir, keyStoreUrl, next)).toEqual(before);
    }, 120_000);

    it('refuses a --keys-store that is not postgres:// without echoing it', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'latchkey-rewrap-pg-'));
      dirs.push(dir);
      const err = await keysRewrap(
        { data: dir, offline: true, 'keys-store': 'mysql://u:secretpw@db/k' },
        () => undefined,
        {},
      ).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UsageError);
      expect((err as Error).message).toBe('--keys-store must be a postgres://... URL');
    });
  });
}
