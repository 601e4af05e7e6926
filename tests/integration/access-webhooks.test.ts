/**
 * The key access log as signed webhooks (docs/siem.md): a real key service with its outbox, a
 * receiver on loopback that verifies every call with the published `standardwebhooks` package,
 * participants that get keys, are refused and whose contact is shredded; the receiver checks the
 * chain with `verifyAccessStream` and the log key. Across a restart of the key service, records
 * written while it was down (by another process) arrive, and a cursor left behind (a crash
 * between queueing and storing it) only sends records twice, which the verifier accepts. And a
 * key service killed (SIGKILL) in the middle of a burst of key requests loses no record.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Webhook } from 'standardwebhooks';
import { afterEach, describe, expect, it } from 'vitest';
import { KeyReceiver } from '@latchkey/client';
import {
  KeyAccessLog,
  accessRecordFromWebhook,
  loadOrCreateSecret,
  verifyAccessStream,
  type ReceivedAccessRecord,
} from '@latchkey/keys';
import { openKeyService, keyServicePaths } from '@latchkey/keyd';
import { ADMIN_PATHS, WEBHOOK_PATHS, WebhookSecretResponse } from '@latchkey/protocol';
import { adminAuthorization, deriveAdminKey, mintToken } from '@latchkey/tokens';
import { until } from './harness.ts';

const secret = crypto.getRandomValues(new Uint8Array(32));
const masterKey = crypto.getRandomValues(new Uint8Array(32));
const ADMIN = adminAuthorization(deriveAdminKey(secret));

interface Call {
  id: string;
  type: string;
  sequence: number;
  data: unknown;
}

/** Accepts only calls `standardwebhooks` verifies with the endpoint's secret. */
async function startReceiver(): Promise<{
  url: string;
  calls: Call[];
  rejected: () => number;
  setSecret(s: string): void;
  close(): Promise<void>;
}> {
  const calls: Call[] = [];
  let rejected = 0;
  let verifier: Webhook | undefined;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const headers = {
        'webhook-id': String(req.headers['webhook-id'] ?? ''),
        'webhook-timestamp': String(req.headers['webhook-timestamp'] ?? ''),
        'webhook-signature': String(req.headers['webhook-signature'] ?? ''),
      };
      try {
        if (!verifier) throw new Error('no secret yet');
        const e = verifier.verify(body, headers) as Omit<Call, 'id'>;
        calls.push({ id: headers['webhook-id'], ...e });
        res.writeHead(204).end();
      } catch {
        rejected++;
        res.writeHead(400).end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/siem`,
    calls,
    rejected: () => rejected,
    setSecret: (s) => {
      verifier = new Webhook(s);
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function open(dir: string) {
  const streamLines: string[] = [];
  const svc = await openKeyService({
    dataDir: dir,
    host: '127.0.0.1',
    port: 0,
    apiSecret: secret,
    masterKey,
    keySweepMs: 3_600_000,
    webhooks: { allowlist: ['127.0.0.1'] },
    accessStreams: { log: (l) => streamLines.push(l) },
  });
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${svc.url}${path}`, {
      method,
      headers: {
        authorization: ADMIN,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as unknown };
  };
  const key = async (contactId: string, participantId: string, body: object = {}) => {
    const token = await mintToken(secret, {
      contactId,
      participantId,
      role: participantId.startsWith('agent') ? 'agent' : 'visitor',
      ttlSeconds: 600,
    });
    const res = await fetch(`${svc.url}/v1/contact-key`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        ...body,
        delivery: new KeyReceiver('x25519', participantId).request(),
      }),
    });
    await res.arrayBuffer();
    return res.status;
  };
  return { svc, call, key, streamLines };
}

/** The log's head and key, read from the files of a stopped key service. */
function logFiles(dir: string): { key: Uint8Array; log: KeyAccessLog } {
  const paths = keyServicePaths(dir);
  const key = loadOrCreateSecret(paths.accessLogKey, 32).secret;
  return { key, log: new KeyAccessLog({ path: paths.db, key }) };
}

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64url');

/** The key service as a child process (_keyd-access-main.ts) over `dir`. */
async function startChild(dir: string): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'tests', 'integration', '_keyd-access-main.ts')],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        LATCHKEY_TEST_DATA: dir,
        LATCHKEY_TEST_SECRET: b64(secret),
        LATCHKEY_TEST_MASTER: b64(masterKey),
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('key service did not start')), 30_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith('keys: ')) {
        clearTimeout(timer);
        resolve(line.slice('keys: '.length));
      }
    });
    child.once('exit', (code) => reject(new Error(`key service exited with ${code}`)));
  });
  return { url, child };
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  await gone;
}

/** One key request to the key service at `url` (undefined when the connection failed). */
async function fetchKey(url: string, contactId: string, participantId: string) {
  const token = await mintToken(secret, {
    contactId,
    participantId,
    role: 'visitor',
    ttlSeconds: 600,
  });
  try {
    const res = await fetch(`${url}/v1/contact-key`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ delivery: new KeyReceiver('x25519', participantId).request() }),
    });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return undefined;
  }
}

describe('key access log as webhooks', () => {
  it('granted, denied and destroyed records arrive signed and chain; a restart loses nothing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'latchkey-access-hooks-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const receiver = await startReceiver();
    cleanup.push(() => receiver.close());

    let s = await open(dir);
    let closed = false;
    cleanup.push(async () => {
      if (!closed) await s.svc.close();
    });
    // Before any endpoint: these records are not queued for anyone (and not sent later).
    expect(await s.key('ah-0', 'visitor-0')).toBe(200);
    await until(() => s.svc.accessStreams.get('webhooks')?.cursor === 1, 10_000, 'cursor at 1');
    const added = await s.call('POST', WEBHOOK_PATHS.endpoints, {
      url: receiver.url,
      events: ['key.accessed', 'key.denied', 'key.destroyed'],
    });
    expect(added.status).toBe(201);
    receiver.setSecret(WebhookSecretResponse.parse(added.body).secret);

    expect(await s.key('ah-1', 'visitor-1')).toBe(200); // 2 granted
    expect(await s.key('ah-1', 'agent-1')).toBe(200); // 3 granted
    expect(await s.key('ah-1', 'visitor-1', { epoch: 7 })).toBe(404); // 4 denied (no such epoch)
    expect(
      (await s.call('POST', ADMIN_PATHS.kick('ah-1'), { participantId: 'visitor-1' })).status,
    ).toBe(200);
    expect(await s.key('ah-1', 'visitor-1')).toBe(403); // 5 denied (kicked)
    expect((await s.call('POST', ADMIN_PATHS.shred('ah-1'), {})).status).toBe(200); // 6 destroyed
    await until(() => receiver.calls.length >= 5, 20_000, 'five access events');
    expect(receiver.calls.map((c) => [c.type, (c.data as { outcome: string }).outcome])).toEqual([
      ['key.accessed', 'granted'],
      ['key.accessed', 'granted'],
      ['key.denied', 'denied'],
      ['key.denied', 'denied'],
      ['key.destroyed', 'destroyed'],
    ]);
    expect(receiver.calls[4]?.data).toMatchObject({
      contactId: 'ah-1',
      participantId: 'admin',
      epoch: 1,
    });

    await s.svc.close();
    closed = true;
    // While it is down: another process appends (the CLI, a second service on the same file),
    // and the cursor is left two records behind, as after a crash between queueing and storing.
    const files = logFiles(dir);
    for (const p of ['visitor-7', 'visitor-8'])
      files.log.append({
        contactId: 'ah-2',
        epoch: 0,
        participantId: p,
        time: Date.now(),
        outcome: 'denied',
      });
    expect(files.log.cursor('webhooks')).toBe(6);
    files.log.setCursor('webhooks', 4);
    files.log.close();

    s = await open(dir);
    closed = false;
    expect(await s.key('ah-3', 'visitor-3')).toBe(200); // 9 granted
    await until(
      () => receiver.calls.some((c) => (c.data as { chain: { seq: number } }).chain.seq === 9),
      20_000,
      'record 9',
    );
    await s.svc.close();
    closed = true;

    // The receiver's view: records 2..9 (1 was before the endpoint), 5 and 6 twice.
    const records = receiver.calls.map((c) => accessRecordFromWebhook(c)) as ReceivedAccessRecord[];
    expect(records.every((r) => r !== undefined)).toBe(true);
    expect(records.map((r) => r.seq)).toEqual([2, 3, 4, 5, 6, 5, 6, 7, 8, 9]);
    const head = logFiles(dir);
    const want = head.log.head();
    head.log.close();
    // With the log key every hash is recomputed; the endpoint started after record 1.
    expect(verifyAccessStream(records, { key: head.key, after: null, head: want })).toEqual({
      ok: true,
      count: 8,
      duplicates: 2,
      head: want,
      recomputed: true,
    });
    // Without the key: the links.
    expect(verifyAccessStream(records, { after: null })).toMatchObject({
      ok: true,
      recomputed: false,
    });
    // The endpoint's own sequence has no gap, and every call was signed.
    expect(receiver.calls.map((c) => c.sequence)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(receiver.rejected()).toBe(0);

    // Adversarial: a record dropped or changed on the way (or in the outbox) is caught.
    const dropped = records.filter((r) => r.seq !== 7);
    expect(verifyAccessStream(dropped, { key: head.key, after: null })).toEqual({
      ok: false,
      seq: 7,
      reason: 'record 7 missing',
    });
    const changed = records.map((r) => (r.seq === 4 ? { ...r, outcome: 'granted' as const } : r));
    expect(verifyAccessStream(changed, { key: head.key, after: null })).toMatchObject({
      ok: false,
      seq: 4,
    });
    expect(s.streamLines).toEqual([]);
  });

  it('a key service killed mid-stream loses no record', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'latchkey-access-crash-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const receiver = await startReceiver();
    cleanup.push(() => receiver.close());
    let run = await startChild(dir);
    cleanup.push(() => stopChild(run.child, 'SIGKILL'));
    const added = await fetch(`${run.url}${WEBHOOK_PATHS.endpoints}`, {
      method: 'POST',
      headers: { authorization: ADMIN, 'content-type': 'application/json' },
      body: JSON.stringify({ url: receiver.url, events: ['key.accessed', 'key.denied'] }),
    });
    expect(added.status).toBe(201);
    receiver.setSecret(WebhookSecretResponse.parse(await added.json()).secret);

    // A burst of key requests (a new contact each, so they are granted), killed in the middle.
    const url = run.url;
    const burst = Promise.all(
      Array.from({ length: 40 }, (_, i) => fetchKey(url, `kc-${i}`, 'visitor-1')),
    );
    await until(() => receiver.calls.length >= 3, 30_000, 'the stream flowing');
    await stopChild(run.child, 'SIGKILL');
    const statuses = await burst;
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThan(0);

    run = await startChild(dir);
    for (let i = 0; i < 3; i++) expect(await fetchKey(run.url, `kd-${i}`, 'visitor-1')).toBe(200);
    // The log as the key service wrote it (read beside the running service).
    const paths = keyServicePaths(dir);
    const key = loadOrCreateSecret(paths.accessLogKey, 32).secret;
    const log = new KeyAccessLog({ path: paths.db, key });
    const head = log.head();
    log.close();
    const seqs = () => new Set(receiver.calls.map((c) => accessRecordFromWebhook(c)?.seq ?? 0));
    await until(() => seqs().has(head.seq), 60_000, `record ${head.seq}`);
    await stopChild(run.child, 'SIGTERM');
    const records = receiver.calls.map((c) => accessRecordFromWebhook(c)) as ReceivedAccessRecord[];
    expect(verifyAccessStream(records, { key, head })).toMatchObject({
      ok: true,
      count: head.seq,
      recomputed: true,
    });
    expect(receiver.rejected()).toBe(0);
  }, 120_000);

  it('the retention sweep destroying an expired contact is a key.destroyed by retention', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'latchkey-access-hooks-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const receiver = await startReceiver();
    cleanup.push(() => receiver.close());
    const s = await open(dir);
    cleanup.push(() => s.svc.close());
    const added = await s.call('POST', WEBHOOK_PATHS.endpoints, {
      url: receiver.url,
      events: ['key.destroyed'],
    });
    receiver.setSecret(WebhookSecretResponse.parse(added.body).secret);
    expect(await s.key('ar-1', 'visitor-1')).toBe(200);
    const expiresAt = Date.now() + 50;
    expect((await s.call('POST', ADMIN_PATHS.expiry('ar-1'), { expiresAt })).status).toBe(200);
    await until(() => Date.now() > expiresAt, 5_000, 'the expiry');
    expect(await s.svc.sweepExpired()).toEqual(['ar-1']);
    await until(() => receiver.calls.length === 1, 20_000, 'key.destroyed');
    expect(receiver.calls[0]).toMatchObject({
      type: 'key.destroyed',
      data: { contactId: 'ar-1', participantId: 'retention', outcome: 'destroyed', epoch: 0 },
    });
    // Subscribed to one event only: its record checks on its own with the key, not as a chain.
    const r = accessRecordFromWebhook(receiver.calls[0]);
    expect(r?.seq).toBe(2);
  });
});
