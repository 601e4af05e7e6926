/**
 * Degraded mode end to end (issue 17: "The external key manager cut for 30 s with the cache on
 * and off: the documented behaviour, and recovery"; docs/key-management.md "Degraded mode"): a
 * key service from `openKeyService` on the reference external key manager (apps/kms-example, a
 * child process, wrap model as `--key-manager http`), asked over HTTP with participant tokens
 * and the admin API. The key manager is killed (its port then refuses connections) and started
 * again on the same port over the same data.
 *
 * - Cache off: every hand-out answers 503 KEY_UNAVAILABLE; `/healthz` 503 without `keyCache`.
 * - Cache on: a member gets the key it was handed before, byte for byte; a new contact and a
 *   requested rotation get KEY_UNAVAILABLE, a kick answers `rotationPending: true`, after which
 *   the cache no longer hands out the current epoch (older epochs still); `/healthz` and
 *   `/metrics` say degraded. With a short TTL the cached answer stops at the TTL.
 * - Recovery, both: the kick's owed rotation is completed by the key sweep, once; new contacts
 *   work, old epochs still open, `/healthz` 200; the access log verifies and holds every
 *   hand-out, refusal and unavailable answer in order.
 *
 * The outage lasts 30 s. Nothing here depends on how long it lasts, only on events (the
 * first call that fails, the TTL, the owed-rotation retry), so the cut lasts exactly as long as
 * the checks made during it and the TTL bound is shown with a short TTL, polled until it flips:
 * sleeping 30 s would slow the suite and prove nothing more.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { toBase64Url } from '@latchkey/crypto/codec';
import { keyServicePaths, openKeyService } from '@latchkey/keyd';
import { KeyAccessLog, loadOrCreateSecret } from '@latchkey/keys';
import { adminAuthorization, deriveAdminKey, mintToken } from '@latchkey/tokens';
import { KMS_MAIN, ROOT } from './_byok.ts';

const apiSecret = crypto.getRandomValues(new Uint8Array(32));
const kmsSecret = crypto.getRandomValues(new Uint8Array(32));

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

interface KmsProcess {
  url: string;
  port: number;
  /** SIGKILL, as a crash or a cut link: the port refuses connections from then on. */
  cut(): Promise<void>;
}

/** The reference key manager as a child process on `port` (0: any), over `dir`. */
async function startKms(dir: string, port = 0): Promise<KmsProcess> {
  const child: ChildProcess = spawn(
    process.execPath,
    ['--import', 'tsx', KMS_MAIN, '--data', dir, '--port', String(port)],
    {
      cwd: join(ROOT, 'apps', 'kms-example'),
      env: { ...process.env, KMS_HMAC_SECRET: toBase64Url(kmsSecret), KMS_CLIENT_ID: 'latchkey' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const cut = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  cleanups.push(cut);
  let err = '';
  child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`kms did not start: ${err}`)), 30_000);
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /kms: (http:\/\/\S+)/.exec(out);
      if (m?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`kms exited: ${err}`));
    });
  });
  return { url, port: Number(new URL(url).port), cut };
}

/** Whether a TCP connection to 127.0.0.1:`port` is refused (nothing listens). */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
  });
}

/**
 * Calls `get` until `done` holds (every `everyMs`, at most `ms`); the last value. A member's
 * requests are polled every 600 ms: the key service allows a participant 2 per second.
 */
async function poll<T>(
  what: string,
  get: () => Promise<T>,
  done: (v: T) => boolean,
  ms: number,
  everyMs = 600,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (done(v)) return v;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${ms} ms waiting for ${what}: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

interface KeyAnswer {
  status: number;
  body: {
    key?: string;
    epoch?: number;
    currentEpoch?: number;
    error?: { code: string; message: string };
  };
}

interface Health {
  status: number;
  body: {
    status: string;
    keyCache?: {
      ttlSeconds: number;
      degraded: boolean;
      since?: string;
      entries: number;
      servedFromCache: number;
      missedWhileDegraded: number;
      lastError?: { code: string };
    };
  };
}

/** A key service on the key manager at `kmsUrl`, with the cache TTL `ttlMs` (0: off). */
async function startKeys(kmsUrl: string, ttlMs: number) {
  const dir = await tempDir('latchkey-degraded-keys-');
  const lines: string[] = [];
  const svc = await openKeyService({
    dataDir: dir,
    host: '127.0.0.1',
    port: 0,
    apiSecret,
    masterKey: crypto.getRandomValues(new Uint8Array(32)),
    // Retries off and a 1 s circuit cooldown: recovery waits on the key sweep's owed-rotation
    // retry, not on the breaker's default 10 s (the breaker has tests of its own).
    keyManager: {
      kind: 'http',
      url: kmsUrl,
      secret: kmsSecret,
      retries: 0,
      breakerCooldownMs: 1000,
    },
    keyCacheTtlMs: ttlMs,
    allowPlainKeyDelivery: true,
    // A requested rotation is then due at once: refused only for want of the key manager.
    minRotateAgeMs: 0,
    keyManagerLog: (l) => lines.push(l),
    log: () => undefined,
  });
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await svc.close();
  };
  cleanups.push(close);
  const url = svc.url;
  const bearer = async (contactId: string, participantId: string): Promise<string> =>
    `Bearer ${await mintToken(apiSecret, { contactId, participantId, role: 'visitor', ttlSeconds: 600 })}`;
  return {
    dir,
    lines,
    close,
    /** POST /v1/contact-key as `participantId` of `contactId` (plain delivery). */
    async key(contactId: string, participantId: string, body: object = {}): Promise<KeyAnswer> {
      const res = await fetch(`${url}/v1/contact-key`, {
        method: 'POST',
        headers: {
          authorization: await bearer(contactId, participantId),
          'content-type': 'application/json',
        },
        body: JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as KeyAnswer['body'] };
    },
    /** The current epoch from the signed epoch statement (no key fetched, nothing logged). */
    async epoch(contactId: string, participantId: string): Promise<number> {
      const res = await fetch(`${url}/v1/epoch-statement`, {
        method: 'POST',
        headers: { authorization: await bearer(contactId, participantId) },
      });
      const json = (await res.json()) as { statement: { body: string } };
      expect(res.status, JSON.stringify(json)).toBe(200);
      return (
        JSON.parse(Buffer.from(json.statement.body, 'base64url').toString('utf8')) as {
          epoch: number;
        }
      ).epoch;
    },
    async kick(contactId: string, participantId: string): Promise<Record<string, unknown>> {
      const res = await fetch(`${url}/admin/v1/contacts/${contactId}/kick`, {
        method: 'POST',
        headers: {
          authorization: adminAuthorization(deriveAdminKey(apiSecret)),
          'content-type': 'application/json',
        },
        body: JSON.stringify({ participantId }),
      });
      const json = (await res.json()) as Record<string, unknown>;
      expect(res.status, JSON.stringify(json)).toBe(200);
      return json;
    },
    async health(): Promise<Health> {
      const res = await fetch(`${url}/healthz`);
      return { status: res.status, body: (await res.json()) as Health['body'] };
    },
    async metrics(): Promise<string> {
      const res = await fetch(`${url}/metrics`);
      expect(res.status).toBe(200);
      return res.text();
    },
  };
}

const unavailable = (a: KeyAnswer): void => {
  expect(a.status, JSON.stringify(a.body)).toBe(503);
  expect(a.body.error?.code).toBe('KEY_UNAVAILABLE');
  expect(a.body.key).toBeUndefined();
};

/** The value of the metric `name` in Prometheus text (undefined when absent). */
const metric = (text: string, name: string): number | undefined => {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m?.[1] === undefined ? undefined : Number(m[1]);
};

/** The access log of a stopped key service: verdict and records as `contact participant outcome epoch`. */
function accessLog(dir: string): { ok: boolean; records: string[] } {
  const paths = keyServicePaths(dir);
  const log = new KeyAccessLog({
    path: paths.db,
    key: loadOrCreateSecret(paths.accessLogKey, 32).secret,
  });
  try {
    return {
      ok: log.verify().ok,
      records: log
        .list({ limit: 1000 })
        .map((r) => `${r.contactId} ${r.participantId} ${r.outcome} ${r.epoch}`),
    };
  } finally {
    log.close();
  }
}

/** The whole scenario: fetch, cut, checks during the cut, restore, recovery, access log. */
async function cutAndRestore(ttlMs: number): Promise<void> {
  const cached = ttlMs > 0;
  const kmsDir = await tempDir('latchkey-degraded-kms-');
  const kms = await startKms(kmsDir);
  const keys = await startKeys(kms.url, ttlMs);

  // Up: three members of `room` get epoch 0, the same key (one after the other: the access
  // log's order is checked at the end).
  const before: KeyAnswer[] = [];
  for (const p of ['alice', 'bob', 'carol']) before.push(await keys.key('room', p));
  for (const a of before) expect(a.status, JSON.stringify(a.body)).toBe(200);
  const k0 = before[0]!.body.key!;
  expect(before.map((a) => [a.body.epoch, a.body.key])).toEqual([
    [0, k0],
    [0, k0],
    [0, k0],
  ]);
  const up = await keys.health();
  expect(up.status).toBe(200);
  if (cached) expect(up.body.keyCache).toMatchObject({ degraded: false, entries: 1 });
  else expect(up.body.keyCache).toBeUndefined();

  // The cut (see the module comment on its length): every check below runs while it lasts.
  await kms.cut();
  expect(await refused(kms.port)).toBe(true);

  const again = await keys.key('room', 'alice');
  if (cached) {
    expect(again.status, JSON.stringify(again.body)).toBe(200);
    expect(again.body).toMatchObject({ epoch: 0, currentEpoch: 0, key: k0 });
  } else {
    unavailable(again);
  }

  const down = await keys.health();
  expect(down.status).toBe(503);
  expect(down.body.status).not.toBe('ok');
  if (cached) {
    expect(down.body.keyCache).toMatchObject({
      ttlSeconds: ttlMs / 1000,
      degraded: true,
      entries: 1,
      servedFromCache: 1,
    });
    expect(Date.parse(down.body.keyCache!.since!)).toBeGreaterThan(0);
    const m = await keys.metrics();
    expect(metric(m, 'latchkey_keyd_key_manager_degraded')).toBe(1);
    expect(metric(m, 'latchkey_keyd_key_cache_served_total')).toBe(1);
    expect(metric(m, 'latchkey_keyd_key_cache_ttl_seconds')).toBe(ttlMs / 1000);
    expect(metric(m, 'latchkey_keyd_key_manager_degraded_since_seconds')).toBeGreaterThan(0);
  } else {
    expect(down.body.keyCache).toBeUndefined();
    // The metrics are there with the cache off too: never degraded, TTL 0.
    const m = await keys.metrics();
    expect(metric(m, 'latchkey_keyd_key_manager_degraded')).toBe(0);
    expect(metric(m, 'latchkey_keyd_key_cache_ttl_seconds')).toBe(0);
  }

  // A new contact's first key and a requested rotation need the key manager, cache or not.
  unavailable(await keys.key('lobby', 'dave'));
  unavailable(await keys.key('room', 'bob', { rotate: { ifEpoch: 0 } }));
  if (cached) {
    // After the failed rotation the cache no longer vouches for epoch 0 as current; asked by
    // number, epoch 0 is still served.
    unavailable(await keys.key('room', 'bob'));
    const byNumber = await keys.key('room', 'bob', { epoch: 0 });
    expect(byNumber.status, JSON.stringify(byNumber.body)).toBe(200);
    expect(byNumber.body.key).toBe(k0);
  }

  // A kick: the removal stands at once, its rotation is owed.
  expect(await keys.kick('room', 'carol')).toMatchObject({ rotationPending: true });
  const kicked = await keys.key('room', 'carol');
  expect(kicked.status).toBe(403);
  expect(kicked.body.error?.code).toBe('FORBIDDEN');
  expect(await keys.epoch('room', 'alice')).toBe(0);

  // Back on the same port over the same data.
  await startKms(kmsDir, kms.port);
  // The key sweep retries owed rotations every 5 s (OWED_ROTATION_RETRY_MS).
  await poll(
    'the owed rotation',
    () => keys.epoch('room', 'alice'),
    (e) => e === 1,
    60_000,
  );
  // Done once: a repeated kick answers that epoch without rotating again.
  expect(await keys.kick('room', 'carol')).toMatchObject({ rotatedEpoch: 1 });
  expect(await keys.epoch('room', 'alice')).toBe(1);

  const after = await keys.key('room', 'alice');
  expect(after.status, JSON.stringify(after.body)).toBe(200);
  expect(after.body).toMatchObject({ epoch: 1, currentEpoch: 1 });
  expect(after.body.key).not.toBe(k0);
  const old = await keys.key('room', 'alice', { epoch: 0 });
  expect(old.body).toMatchObject({ epoch: 0, key: k0 });
  expect((await keys.key('room', 'carol')).status).toBe(403);
  const lobby = await keys.key('lobby', 'dave');
  expect(lobby.status, JSON.stringify(lobby.body)).toBe(200);
  expect(lobby.body.epoch).toBe(0);

  const healthy = await poll(
    '/healthz 200',
    () => keys.health(),
    (h) => h.status === 200,
    30_000,
    200,
  );
  expect(healthy.body.status).toBe('ok');
  if (cached) {
    expect(healthy.body.keyCache).toMatchObject({ degraded: false });
    expect(healthy.body.keyCache?.since).toBeUndefined();
    const m = await keys.metrics();
    expect(metric(m, 'latchkey_keyd_key_manager_degraded')).toBe(0);
    expect(metric(m, 'latchkey_keyd_key_manager_degraded_periods_total')).toBe(1);
    expect(keys.lines.filter((l) => /^key manager: (degraded|recovered)/.test(l))).toEqual([
      expect.stringMatching(/^key manager: degraded \(serving cached keys\): KEY_UNAVAILABLE: /),
      expect.stringMatching(/^key manager: recovered \(degraded for \d+ s, 2 answers served/),
    ]);
  } else {
    expect(healthy.body.keyCache).toBeUndefined();
    expect(keys.lines.some((l) => /^key manager: (degraded|recovered)/.test(l))).toBe(false);
  }

  // Nothing lost: the chain verifies, and holds every answer of the run, in order.
  await keys.close();
  const log = accessLog(keys.dir);
  expect(log.ok).toBe(true);
  expect(log.records).toEqual([
    'room alice granted 0',
    'room bob granted 0',
    'room carol granted 0',
    cached ? 'room alice granted 0' : 'room alice unavailable 0',
    'lobby dave unavailable 0',
    'room bob unavailable 0',
    ...(cached ? ['room bob unavailable 0', 'room bob granted 0'] : []),
    'room carol denied 0',
    'room alice granted 1',
    'room alice granted 0',
    'room carol denied 0',
    'lobby dave granted 0',
  ]);
}

describe('the external key manager cut and restored', () => {
  it('cache off: KEY_UNAVAILABLE and /healthz 503 while it is away, all back after', async () => {
    await cutAndRestore(0);
  }, 180_000);

  it('cache on: cached keys served, rotation and new contacts refused, declared, all back after', async () => {
    await cutAndRestore(60_000);
  }, 180_000);

  it('cache on with a short TTL: the cached key stops being served once the TTL has passed', async () => {
    const ttlMs = 4_000;
    const kms = await startKms(await tempDir('latchkey-degraded-kms-'));
    const keys = await startKeys(kms.url, ttlMs);
    const fetchedFrom = Date.now();
    const first = await keys.key('room', 'alice');
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    await kms.cut();
    // Served from the cache, then KEY_UNAVAILABLE: never before the TTL counted from the fetch.
    const served: KeyAnswer[] = [];
    const flipped = await poll(
      'the cached key to expire',
      async () => {
        const a = await keys.key('room', 'alice');
        if (a.status === 200) served.push(a);
        return { a, at: Date.now() };
      },
      ({ a }) => a.status !== 200,
      ttlMs + 30_000,
    );
    unavailable(flipped.a);
    expect(flipped.at).toBeGreaterThanOrEqual(fetchedFrom + ttlMs);
    expect(served.length).toBeGreaterThan(0);
    for (const a of served) expect(a.body.key).toBe(first.body.key);
    const h = await keys.health();
    expect(h.status).toBe(503);
    expect(h.body.keyCache).toMatchObject({ degraded: true, entries: 0 });
    expect(h.body.keyCache!.missedWhileDegraded).toBeGreaterThanOrEqual(1);
  }, 120_000);
});
