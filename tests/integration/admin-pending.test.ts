/**
 * An admin action is never half-applied (issue 14): `latchkey kick` against a key service in a
 * child process with the reference key manager (apps/kms-example) behind a fault proxy, and a
 * relay in a child process. Each side is cut or killed at each step: the key manager before
 * the rotation (pending, then completed by the key service's retry), the relay after the key
 * service applied (re-run completes, no second rotation), the key service killed between the
 * membership change and the rotation (completed at its next start-up, re-run completes the
 * relay). Each ends with both sides applied and the CLI saying pending or complete.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { KeyReceiver } from '@latchkey/client';
import type { ContactKeyResponse } from '@latchkey/protocol';
import { adminAuthorization, deriveAdminKey, mintToken } from '@latchkey/tokens';
import { startFaultProxy, type FaultProxy } from '../../apps/kms-example/test/_fault-proxy.ts';
import { CLI, ROOT, startKmsChild } from './_byok.ts';
import { until } from './harness.ts';
import { freePort, spawnRelay, stopRelay, type RelayProcess } from './relay-process.ts';

const KEYD_MAIN = join(ROOT, 'tests', 'integration', '_keyd-main.ts');
const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64url');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

let dir: string;
let secret: Uint8Array;
let master: Uint8Array;
let hmac: Uint8Array;
let kms: Awaited<ReturnType<typeof startKmsChild>>;
let proxy: FaultProxy;
let relayPort: number;
let keysPort: number;
let relay: RelayProcess | undefined;
let keyd: ChildProcess | undefined;
let proxyDown = false;

async function startKeyd(timeoutMs = 500): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', KEYD_MAIN], {
    cwd: ROOT,
    env: {
      ...process.env,
      LATCHKEY_TEST_DATA: join(dir, 'keyd'),
      LATCHKEY_TEST_PORT: String(keysPort),
      LATCHKEY_TEST_SECRET: b64(secret),
      LATCHKEY_TEST_MASTER: b64(master),
      LATCHKEY_TEST_KMS_URL: proxy.url,
      LATCHKEY_TEST_KMS_SECRET: b64(hmac),
      LATCHKEY_TEST_KMS_TIMEOUT: String(timeoutMs),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('key service did not start')), 20_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith('keys: ')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`key service exited with ${code}`)));
  });
  keyd = child;
}

async function killKeyd(signal: NodeJS.Signals): Promise<void> {
  const child = keyd;
  keyd = undefined;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  await exited;
}

const keysUrl = (): string => `http://127.0.0.1:${keysPort}`;
const relayHttp = (): string => `http://127.0.0.1:${relayPort}`;

function latchkey(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args, '--data', dir, '--relay', `ws://127.0.0.1:${relayPort}`, '--keys', keysUrl()],
      { env: { ...process.env, LATCHKEY_API_SECRET: b64(secret) }, timeout: 30_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
      },
    );
  });
}

const kick = (contact: string, participant: string): Promise<Run> =>
  latchkey(['kick', '--contact', contact, '--participant', participant]);

/** The participant's state on one side (admin GET), or undefined when the side has not seen it. */
async function stateOn(base: string, contact: string, participant: string): Promise<string> {
  const res = await fetch(`${base}/admin/v1/contacts/${contact}`, {
    headers: { authorization: adminAuthorization(deriveAdminKey(secret)) },
  });
  const json = (await res.json()) as {
    contact?: { participants: { participantId: string; state: string }[] };
  };
  return (
    json.contact?.participants.find((p) => p.participantId === participant)?.state ?? 'unknown'
  );
}

/** A key fetch as a client makes it; returns the HTTP status and the epoch handed out. */
async function fetchKey(contact: string, participant: string, role = 'visitor') {
  const token = await mintToken(secret, {
    contactId: contact,
    participantId: participant,
    role: role as 'visitor',
    ttlSeconds: 600,
  });
  const receiver = new KeyReceiver('x25519', participant);
  const res = await fetch(`${keysUrl()}/v1/contact-key`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ delivery: receiver.request() }),
  });
  const json = (await res.json()) as Partial<ContactKeyResponse> & { error?: { code: string } };
  return { status: res.status, epoch: json.epoch, code: json.error?.code };
}

/** The epochs the key service dated for a contact (keys/access.db `epoch_times`). */
function epochs(contact: string): number[] {
  const db = new Database(join(dir, 'keyd', 'keys', 'access.db'), { readonly: true });
  try {
    return db
      .prepare<[string], { epoch: number }>(
        'SELECT epoch FROM epoch_times WHERE contact_id = ? ORDER BY epoch',
      )
      .all(contact)
      .map((r) => r.epoch);
  } finally {
    db.close();
  }
}

/** A contact with a content key (epoch 0) and an active agent `v` on both sides. */
async function setUp(contact: string): Promise<void> {
  const inv = await latchkey([
    'invite',
    '--contact',
    contact,
    '--participant',
    'v',
    '--role',
    'agent',
  ]);
  expect(inv.stderr).toBe('');
  expect(inv.code).toBe(0);
  expect((await fetchKey(contact, 'w')).epoch).toBe(0);
  expect((await fetchKey(contact, 'v', 'agent')).status).toBe(200);
  expect(await stateOn(relayHttp(), contact, 'v')).toBe('active');
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'latchkey-admin-pending-'));
  secret = crypto.getRandomValues(new Uint8Array(32));
  master = crypto.getRandomValues(new Uint8Array(32));
  hmac = crypto.getRandomValues(new Uint8Array(32));
  kms = await startKmsChild(join(dir, 'kms'), hmac);
  proxy = await startFaultProxy(kms.url);
  relayPort = await freePort();
  keysPort = await freePort();
  relay = await spawnRelay({ dataDir: join(dir, 'relay'), port: relayPort, secret });
  await startKeyd();
}, 60_000);

afterAll(async () => {
  await killKeyd('SIGTERM');
  await stopRelay(relay, 'SIGTERM');
  await proxy?.close();
  await kms?.stop();
  await rm(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  proxy.mode = 'pass';
  if (proxyDown) await proxy.up();
  proxyDown = false;
  if (relay?.child.exitCode !== null || relay.child.signalCode !== null)
    relay = await spawnRelay({ dataDir: join(dir, 'relay'), port: relayPort, secret });
});

describe('admin actions are applied on both sides or completed from a durable record', () => {
  it('key manager cut before the rotation: pending, kicked on both sides, rotated once it is back', async () => {
    await setUp('c1');
    await proxy.down();
    proxyDown = true;
    const r = await kick('c1', 'v');
    expect(r.stdout.trim()).toBe(
      'kicked v from c1 (pending: key rotation waits for the key manager)',
    );
    expect(r.code).toBe(4);
    // Refused from the moment the key service recorded the kick; the relay applied it too.
    expect((await fetchKey('c1', 'v', 'agent')).code).toBe('FORBIDDEN');
    expect(await stateOn(keysUrl(), 'c1', 'v')).toBe('kicked');
    expect(await stateOn(relayHttp(), 'c1', 'v')).toBe('kicked');
    expect(epochs('c1')).toEqual([0]);
    // Running it again while the key manager is still down: still pending, nothing else changes.
    const again = await kick('c1', 'v');
    expect(again.code).toBe(4);
    expect(again.stdout).toContain('(pending: key rotation waits for the key manager)');
    await proxy.up();
    proxyDown = false;
    // The key service's retry completes the rotation on its own.
    await until(() => epochs('c1').includes(1), 20_000, 'the owed rotation');
    expect(epochs('c1')).toEqual([0, 1]);
    expect((await fetchKey('c1', 'w')).epoch).toBe(1);
    const done = await kick('c1', 'v');
    expect(done.stdout.trim()).toBe('kicked v from c1 (key rotated to epoch 1)');
    expect(done.code).toBe(0);
    expect(epochs('c1')).toEqual([0, 1]);
  }, 60_000);

  it('relay cut after the key service applied: says so; re-running completes it without rotating twice', async () => {
    await setUp('c2');
    await stopRelay(relay);
    const r = await kick('c2', 'v');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/relay: .*already applied on the key service.*run the command again/);
    expect(await stateOn(keysUrl(), 'c2', 'v')).toBe('kicked');
    expect(epochs('c2')).toEqual([0, 1]);
    relay = await spawnRelay({ dataDir: join(dir, 'relay'), port: relayPort, secret });
    expect(await stateOn(relayHttp(), 'c2', 'v')).toBe('active');
    const done = await kick('c2', 'v');
    expect(done.stdout.trim()).toBe('kicked v from c2 (key rotated to epoch 1)');
    expect(done.code).toBe(0);
    expect(await stateOn(relayHttp(), 'c2', 'v')).toBe('kicked');
    expect(epochs('c2')).toEqual([0, 1]);
  }, 60_000);

  it('key service killed between the membership change and the rotation: rotated at start-up, re-run completes the relay', async () => {
    await killKeyd('SIGTERM');
    await startKeyd(30_000);
    await setUp('c3');
    proxy.slowMs = 60_000;
    proxy.mode = 'slow';
    const running = kick('c3', 'v');
    let kicked = false;
    while (!kicked) {
      kicked = (await stateOn(keysUrl(), 'c3', 'v')) === 'kicked';
      if (!kicked) await new Promise((r) => setTimeout(r, 10));
    }
    await killKeyd('SIGKILL');
    const r = await running;
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('key service:');
    expect(r.stderr).not.toContain('nothing applied');
    expect(r.stderr).toContain('run the command again');
    expect(await stateOn(relayHttp(), 'c3', 'v')).toBe('active');
    // While it is down the request never leaves: nothing applied, and the CLI says so.
    const refused = await kick('c3', 'v');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/key service: cannot connect \(nothing applied\)/);
    expect(await stateOn(relayHttp(), 'c3', 'v')).toBe('active');
    proxy.mode = 'pass';
    await startKeyd();
    await until(() => epochs('c3').includes(1), 20_000, 'the rotation at start-up');
    expect(await stateOn(keysUrl(), 'c3', 'v')).toBe('kicked');
    const done = await kick('c3', 'v');
    expect(done.stdout.trim()).toBe('kicked v from c3 (key rotated to epoch 1)');
    expect(done.code).toBe(0);
    expect(await stateOn(relayHttp(), 'c3', 'v')).toBe('kicked');
    expect(epochs('c3')).toEqual([0, 1]);
  }, 90_000);
});
