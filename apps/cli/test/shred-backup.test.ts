/**
 * Shredding that survives backups (issue 13, item 8), attacked end to end with real processes
 * and SQLite files: backups of messages and keys taken before a shred, then `latchkey shred`,
 * then `latchkey shred --complete`, then the old backups restored beside the live secrets.
 * Nothing of the old backups opens any more (the shredded contact least of all), while the
 * other contacts keep working from the live data.
 *
 * The content keys are what an attacker is after (every message of a contact is sealed under
 * them), so the test makes them through a second connection on the live key database, keeps
 * their values, and checks that no stored form of them opens with anything that still exists.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deriveKek, unwrapContentKey } from '@latchkey/crypto/wrap';
import { openInternalKeyManager } from '@latchkey/keys';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'latchkey.mjs');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of [
    'LATCHKEY_API_SECRET',
    'LATCHKEY_MASTER_KEY',
    'LATCHKEY_NEW_MASTER_KEY',
    'LATCHKEY_RELAY_URL',
    'LATCHKEY_KEYS_URL',
    'LATCHKEY_ADMIN_KEY',
  ]) {
    delete env[k];
  }
  return env;
}

function latchkey(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { env: cleanEnv(), timeout: 60_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
      },
    );
  });
}

interface Started {
  child: ChildProcess;
  lines: string[];
}

/** `latchkey start`; resolves at `ready`, or with the exit code when it refuses to start. */
async function startLatchkey(
  data: string,
  extra: string[] = [],
): Promise<Started | { exitCode: number; stderr: string }> {
  const child = spawn(process.execPath, [BIN, 'start', '--data', data, '--port', '0', ...extra], {
    env: cleanEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  createInterface({ input: child.stdout! }).on('line', (line) => lines.push(line));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`start did not print ready: ${lines.join('\n')} ${stderr}`)),
      40_000,
    );
    const poll = setInterval(() => {
      if (lines.includes('ready')) {
        clearTimeout(timer);
        clearInterval(poll);
        resolve({ child, lines });
      }
    }, 20);
    child.once('exit', (code) => {
      clearTimeout(timer);
      clearInterval(poll);
      if (!lines.includes('ready')) resolve({ exitCode: code ?? 1, stderr });
    });
  });
}

async function stop(s: Started | undefined): Promise<void> {
  if (!s || s.child.exitCode !== null) return;
  const exited = new Promise((r) => s.child.once('exit', r));
  s.child.kill('SIGTERM');
  await exited;
}

const running: Started[] = [];
async function mustStart(data: string, extra: string[] = []): Promise<Started> {
  const s = await startLatchkey(data, extra);
  if (!('child' in s)) throw new Error(`start exited ${s.exitCode}: ${s.stderr}`);
  running.push(s);
  return s;
}

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'latchkey-shred-backup-'));
});
afterAll(async () => {
  for (const s of running) await stop(s);
  await rm(root, { recursive: true, force: true });
});

/** Copies `files` (relative paths) from one data directory into another. */
function copyInto(from: string, to: string, files: string[]): void {
  for (const f of files) {
    if (!existsSync(join(from, f))) continue;
    mkdirSync(dirname(join(to, f)), { recursive: true, mode: 0o700 });
    copyFileSync(join(from, f), join(to, f));
  }
}

/** Every file under a directory, relative paths. */
function listFiles(dir: string, prefix = ''): string[] {
  return readdirSync(join(dir, prefix), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? listFiles(dir, join(prefix, e.name)) : [join(prefix, e.name)],
  );
}

/** Tries every wrapped content key of `contact` in a keys.db with the KEK of `masterKey`. */
async function opensWith(keysDb: string, contact: string, masterKey: Uint8Array): Promise<number> {
  const db = new Database(keysDb, { readonly: true });
  const rows = db
    .prepare<[string], { epoch: number; wrapped: Uint8Array }>(
      'SELECT epoch, wrapped FROM content_keys WHERE contact_id = ?',
    )
    .all(contact);
  db.close();
  let opened = 0;
  const kek = deriveKek(masterKey);
  for (const r of rows) {
    try {
      (await unwrapContentKey(kek, r.wrapped, { contactId: contact, epoch: r.epoch })).fill(0);
      opened++;
    } catch {
      // does not open: what we want
    }
  }
  return opened;
}

const SECRETS = ['master.key', 'api-secret', 'keys/access-log.key'];

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** Content keys of `contacts` (every epoch) through a second connection on a live key database. */
async function makeKeys(keysDb: string, masterKey: Uint8Array): Promise<Map<string, string>> {
  const km = await openInternalKeyManager({ path: keysDb, masterKey });
  const keys = new Map<string, string>();
  try {
    for (const [contact, epochs] of [
      ['doomed', 2],
      ['kept', 1],
    ] as const) {
      for (let e = 0; e < epochs; e++) {
        if (e > 0) await km.rotate(contact);
        const k = await km.getContentKey(contact);
        keys.set(`${contact}/${k.epoch}`, hex(k.key));
      }
    }
  } finally {
    await km.close();
  }
  return keys;
}

describe('shredding that survives backups', () => {
  it('a backup taken before a completed shred opens nothing beside the live secrets; the other contacts live on', async () => {
    const live = join(root, 'live');
    const s = await mustStart(live);
    const oldMaster = Uint8Array.from(readFileSync(join(live, 'master.key')));
    const keysDb = join(live, 'keys', 'keys.db');
    const keys = await makeKeys(keysDb, oldMaster);

    // Backups of messages and keys, taken before the shred.
    const msgBackup = join(root, 'backup-messages');
    const keyBackup = join(root, 'backup-keys');
    const b = await latchkey([
      'backup',
      '--data',
      live,
      '--out',
      msgBackup,
      '--keys-out',
      keyBackup,
    ]);
    expect(b.code, b.stderr).toBe(0);
    expect(b.stdout.trim().split('\n').at(-1)).toBe(`backup: ${msgBackup}`);
    expect(b.stdout).toContain(`keys-backup: ${keyBackup}`);
    // The message backup carries no key of any kind, wrapped or not, and no secret.
    expect(listFiles(msgBackup).sort()).toEqual(['manifest.json', join('relay', 'messages.db')]);
    expect(listFiles(keyBackup)).not.toContain('master.key');
    expect(await opensWith(join(keyBackup, 'keys', 'keys.db'), 'doomed', oldMaster)).toBe(2);

    const shred = await latchkey(['shred', '--data', live, '--contact', 'doomed']);
    expect(shred.stderr).toBe('');
    expect(shred.stdout.trim()).toBe('shredded doomed (keys destroyed, 0 messages deleted)');
    const done = await latchkey(['shred', '--data', live, '--complete']);
    expect(done.stderr).toBe('');
    expect(done.stdout.trim().split('\n').at(-1)).toBe(
      'shred complete: key generation 1 retired, 1 keys re-wrapped',
    );
    // Idempotent: nothing left to retire.
    const again = await latchkey(['shred', '--data', live, '--complete']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout.trim().split('\n').at(-1)).toBe(
      'shred complete: nothing to retire (key generation 2 is current)',
    );

    // The live data: the master key was replaced; the kept contact's key is the same under it,
    // the shredded contact has none; the old master key opens nothing.
    const liveMaster = Uint8Array.from(readFileSync(join(live, 'master.key')));
    expect(hex(liveMaster)).not.toBe(hex(oldMaster));
    expect(existsSync(join(live, 'master.key.new'))).toBe(false);
    const km = await openInternalKeyManager({ path: keysDb, masterKey: liveMaster });
    expect(hex((await km.getContentKey('kept', 0)).key)).toBe(keys.get('kept/0'));
    await expect(km.getContentKey('doomed', 0)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await km.close();
    await expect(
      openInternalKeyManager({ path: keysDb, masterKey: oldMaster }),
    ).rejects.toMatchObject({ code: 'KEY_UNAVAILABLE' });
    await stop(s);

    // The attack: the old backups restored, with the live secrets copied beside them.
    const attack = join(root, 'attack');
    for (const from of [msgBackup, keyBackup]) {
      const r = await latchkey(['restore', '--from', from, '--data', attack]);
      expect(r.code, r.stderr).toBe(0);
    }
    copyInto(live, attack, SECRETS);
    // By hand: no stored key of the shredded contact (nor of any other) unwraps under the live KEK.
    expect(await opensWith(join(attack, 'keys', 'keys.db'), 'doomed', liveMaster)).toBe(0);
    expect(await opensWith(join(attack, 'keys', 'keys.db'), 'kept', liveMaster)).toBe(0);
    await expect(
      openInternalKeyManager({ path: join(attack, 'keys', 'keys.db'), masterKey: liveMaster }),
    ).rejects.toMatchObject({ code: 'KEY_UNAVAILABLE' });
    // Through the product: the key service refuses to start on it.
    const refused = await startLatchkey(attack);
    if ('child' in refused) running.push(refused);
    expect('exitCode' in refused && refused.exitCode).toBe(1);
    expect('stderr' in refused && refused.stderr).toMatch(/^error: KEY_UNAVAILABLE /m);

    // The supported recovery: the old message backup beside the live keys starts and serves.
    const recovered = join(root, 'recovered');
    expect((await latchkey(['restore', '--from', msgBackup, '--data', recovered])).code).toBe(0);
    copyInto(live, recovered, [
      ...SECRETS,
      'keys/keys.db',
      'keys/access.db',
      'keys/service-signing.key',
    ]);
    await stop(await mustStart(recovered));
  }, 240_000);
});
