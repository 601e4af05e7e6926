/**
 * Issue 14 "Webhooks" over real sockets (a receiver on 127.0.0.1, port 0): per-endpoint
 * sequence numbers in the signed body (gap-free, kept across restarts, unchanged on replay),
 * `retry` sending pending deliveries now, and the admin routes' `add` warning for a URL the
 * allowlist refuses and refusal of events the service never emits.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  KEY_SERVICE_WEBHOOK_EVENTS,
  LatchkeyError,
  RELAY_WEBHOOK_EVENTS,
  WebhookSecretResponse,
} from '@latchkey/protocol';
import {
  WebhookOutbox,
  WebhookPayload,
  WebhookService,
  createWebhookVerifier,
  handleWebhookAdmin,
  type WebhookAdminService,
} from '../src/index.ts';

interface Call {
  path: string;
  headers: Record<string, string>;
  body: string;
}

let receiver: Server;
let base: string;
const calls: Call[] = [];
/** Paths answered with 503 while listed. */
const failing = new Set<string>();

beforeAll(async () => {
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '';
      if (failing.has(path)) {
        res.writeHead(503).end();
        return;
      }
      calls.push({
        path,
        headers: {
          'webhook-id': String(req.headers['webhook-id'] ?? ''),
          'webhook-timestamp': String(req.headers['webhook-timestamp'] ?? ''),
          'webhook-signature': String(req.headers['webhook-signature'] ?? ''),
        },
        body: Buffer.concat(chunks).toString('utf8'),
      });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => receiver.close(() => resolve())));

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lk-webhook-seq-'));
  calls.length = 0;
  failing.clear();
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const LOOPBACK = { allowlist: ['127.0.0.1'] };

async function until(
  what: string,
  ok: () => boolean | Promise<boolean>,
  ms = 15_000,
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The verified bodies received on `path`, as the receiver of docs/webhooks.md parses them. */
function received(path: string, secret: string): WebhookPayload[] {
  const verifier = createWebhookVerifier(secret, { replayGuard: false });
  return calls
    .filter((c) => c.path === path)
    .map((c) => WebhookPayload.parse(verifier.verify(c.body, c.headers)) as WebhookPayload);
}

const opened = (n: number) => ({ contactId: `c${n}`, time: n });

describe('sequence numbers', () => {
  it('count 1, 2, 3 per endpoint, are signed, and continue after a restart', async () => {
    const path = join(dir, 'webhooks.db');
    let svc = new WebhookService({ outbox: { path }, delivery: LOOPBACK });
    const all = await svc.outbox.addEndpoint({ url: `${base}/all` }, Date.now());
    const some = await svc.outbox.addEndpoint(
      { url: `${base}/some`, events: ['contact.closed'] },
      Date.now(),
    );
    svc.emit('contact.opened', opened(1));
    svc.emit('contact.closed', opened(2));
    svc.emit('contact.opened', opened(3));
    svc.emit('contact.closed', opened(4));
    await until('4 + 2 calls', () => calls.length === 6);
    expect(received('/all', all.secret).map((e) => [e.type, e.sequence])).toEqual([
      ['contact.opened', 1],
      ['contact.closed', 2],
      ['contact.opened', 3],
      ['contact.closed', 4],
    ]);
    // Each endpoint counts only what it is sent: no gap for a filtered-out event.
    expect(received('/some', some.secret).map((e) => [e.data.contactId, e.sequence])).toEqual([
      ['c2', 1],
      ['c4', 2],
    ]);

    // The number is inside the signature: changing it breaks verification.
    const first = calls.find((c) => c.path === '/all') as Call;
    const forged = first.body.replace('"sequence":1', '"sequence":9');
    expect(forged).not.toBe(first.body);
    expect(() =>
      createWebhookVerifier(all.secret, { replayGuard: false }).verify(forged, first.headers),
    ).toThrow();

    // Queued before a restart, delivered after it: the numbers were given when queued, on disk.
    await svc.close();
    svc = new WebhookService({ outbox: { path }, delivery: LOOPBACK, autoStart: false });
    svc.emit('contact.closed', opened(5));
    await svc.close();
    svc = new WebhookService({ outbox: { path }, delivery: LOOPBACK });
    svc.emit('contact.opened', opened(6));
    await until('2 more calls on /all', () => received('/all', all.secret).length === 6);
    await until('1 more call on /some', () => received('/some', some.secret).length === 3);
    expect(received('/all', all.secret).map((e) => e.sequence)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(received('/some', some.secret).map((e) => e.sequence)).toEqual([1, 2, 3]);
    await svc.close();
  });

  it('a dead letter leaves a gap the receiver sees; its replay carries its original number', async () => {
    let clock = Date.now();
    const svc = new WebhookService({
      outbox: { path: join(dir, 'dead.db'), retry: { baseMs: 1_000, maxAgeMs: 1 } },
      delivery: LOOPBACK,
      now: () => clock,
      autoStart: false,
    });
    const ep = await svc.outbox.addEndpoint({ url: `${base}/gap` }, clock);
    svc.emit('contact.opened', opened(1));
    await svc.runDue();
    failing.add('/gap');
    svc.emit('contact.opened', opened(2));
    await svc.runDue(); // 503: the retry would be after maxAgeMs, so it is dead at once
    failing.delete('/gap');
    svc.emit('contact.opened', opened(3));
    clock += 10;
    await svc.runDue();
    const seen = received('/gap', ep.secret).map((e) => e.sequence);
    expect(seen).toEqual([1, 3]);
    // The receiver's check of docs/webhooks.md: a number more than last + 1 means a gap.
    const gaps = seen.flatMap((n, i) => (i > 0 && n > (seen[i - 1] as number) + 1 ? [n - 1] : []));
    expect(gaps).toEqual([2]);
    const dead = await svc.outbox.deadLetters(ep.endpoint.id);
    expect(dead.map((d) => d.sequence)).toEqual([2]);
    expect(await svc.outbox.replay(ep.endpoint.id, clock)).toBe(1);
    await svc.runDue();
    const after = received('/gap', ep.secret);
    expect(after.map((e) => [e.data.contactId, e.sequence])).toEqual([
      ['c1', 1],
      ['c3', 3],
      ['c2', 2],
    ]);
    await svc.close();
  });
});

describe('schema 2 outbox', () => {
  it('numbers the deliveries already queued on open, and goes on from there', async () => {
    const path = join(dir, 'v2.db');
    const key = new Uint8Array(32).fill(3);
    const o = new WebhookOutbox({ path, secretKey: key });
    const a = await o.addEndpoint({ url: `${base}/v2a` }, 1);
    const b = await o.addEndpoint({ url: `${base}/v2b`, events: ['contact.closed'] }, 1);
    o.emit('contact.opened', opened(1), 2);
    o.emit('contact.closed', opened(2), 3);
    o.emit('contact.opened', opened(3), 4);
    o.close();
    // Back to the schema 2 layout: no counters, no numbers.
    const db = new Database(path);
    db.exec(`ALTER TABLE webhook_deliveries DROP COLUMN endpoint_seq;
             ALTER TABLE webhook_endpoints DROP COLUMN next_seq;
             UPDATE webhook_schema SET version = 2 WHERE name = 'outbox';`);
    db.close();

    const svc = new WebhookService({ outbox: { path, secretKey: key }, delivery: LOOPBACK });
    svc.emit('contact.closed', opened(4));
    await until('6 calls', () => calls.length === 6);
    expect(received('/v2a', a.secret).map((e) => [e.data.contactId, e.sequence])).toEqual([
      ['c1', 1],
      ['c2', 2],
      ['c3', 3],
      ['c4', 4],
    ]);
    expect(received('/v2b', b.secret).map((e) => [e.data.contactId, e.sequence])).toEqual([
      ['c2', 1],
      ['c4', 2],
    ]);
    await svc.close();
  });
});

describe('retry', () => {
  it('sends pending deliveries now instead of after their backoff, and dead letters again', async () => {
    const svc = new WebhookService({
      outbox: { path: join(dir, 'retry.db'), retry: { baseMs: 3_600_000 } },
      delivery: LOOPBACK,
    });
    const ep = await svc.outbox.addEndpoint({ url: `${base}/retry` }, Date.now());
    failing.add('/retry');
    svc.emit('contact.opened', opened(1));
    svc.emit('contact.opened', opened(2));
    await until(
      'a failed attempt',
      async () => (await svc.endpoint(ep.endpoint.id))?.status.lastError !== null,
    );
    await svc.idle();
    failing.delete('/retry');
    // The next attempt is half an hour away or more: nothing arrives on its own.
    await new Promise((r) => setTimeout(r, 300));
    expect(received('/retry', ep.secret)).toEqual([]);
    expect(await svc.retry(ep.endpoint.id)).toEqual({ pending: 2, dead: 0 });
    await until('both delivered', () => received('/retry', ep.secret).length === 2, 5_000);
    expect(received('/retry', ep.secret).map((e) => e.sequence)).toEqual([1, 2]);
    await expect(svc.retry('ep_nosuchendpoint0000')).rejects.toThrow(LatchkeyError);
    await svc.close();
  });
});

describe('admin routes', () => {
  const relay: WebhookAdminService = { name: 'relay', emits: RELAY_WEBHOOK_EVENTS };
  const keys: WebhookAdminService = { name: 'key service', emits: KEY_SERVICE_WEBHOOK_EVENTS };
  const post = (pathname: string, body: unknown) => ({
    method: 'POST',
    pathname,
    body: async () => body,
  });
  const log = (): void => undefined;

  it('add warns about a loopback or private URL that is not on the allowlist, and adds it', async () => {
    const svc = new WebhookService({
      outbox: { path: join(dir, 'admin.db') },
      delivery: { allowlist: ['127.0.0.1'] },
    });
    for (const [url, code] of [
      ['http://10.1.2.3/hook', 'ADDRESS_REFUSED'],
      ['http://[::1]:9/hook', 'ADDRESS_REFUSED'],
      ['https://169.254.169.254/latest', 'ADDRESS_REFUSED'],
      ['http://93.184.215.14/hook', 'HTTPS_REQUIRED'],
    ] as const) {
      const a = await handleWebhookAdmin(svc, post('/admin/v1/webhooks', { url }), log, relay);
      expect(a?.status).toBe(201);
      const body = WebhookSecretResponse.parse(a?.body);
      expect(body.warning?.code, url).toBe(code);
      expect((await svc.endpoint(body.endpoint.id))?.url).toBe(url);
    }
    const ok = await handleWebhookAdmin(
      svc,
      post('/admin/v1/webhooks', { url: `${base}/fine` }),
      log,
      relay,
    );
    expect(WebhookSecretResponse.parse(ok?.body).warning).toBeUndefined();
    await svc.close();
  });

  it('add refuses events the service never emits (BAD_REQUEST), and retry answers counts', async () => {
    const svc = new WebhookService({
      outbox: { path: join(dir, 'refuse.db') },
      delivery: LOOPBACK,
    });
    const refused = (svcOf: WebhookAdminService, events: string[]) =>
      handleWebhookAdmin(svc, post('/admin/v1/webhooks', { url: base, events }), log, svcOf);
    await expect(refused(keys, ['message.stored'])).rejects.toMatchObject({
      code: 'BAD_REQUEST',
      message: expect.stringContaining('the key service never emits message.stored'),
    });
    await expect(refused(relay, ['key.rotated', 'contact.opened'])).rejects.toMatchObject({
      code: 'BAD_REQUEST',
      message: expect.stringContaining('the relay never emits key.rotated'),
    });
    const a = await refused(keys, [...KEY_SERVICE_WEBHOOK_EVENTS]);
    const id = WebhookSecretResponse.parse(a?.body).endpoint.id;
    expect(
      (await handleWebhookAdmin(svc, post(`/admin/v1/webhooks/${id}/retry`, {}), log, keys))?.body,
    ).toEqual({ pending: 0, dead: 0 });
    await svc.close();
  });
});
