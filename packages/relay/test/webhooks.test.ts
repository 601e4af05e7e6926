/**
 * Signed webhooks from a real relay to a real receiver process (verifying with the published
 * `standardwebhooks` package and our helper): lifecycle and message events, metadata only; the
 * /admin/v1/webhooks routes; nothing lost across a relay restart while the receiver is down.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebhookService } from '@latchkey/webhooks';
import { adminAuthorization, deriveAdminKey } from '@latchkey/tokens';
import { createRelay, type Relay } from '../src/index.ts';
import { fakeEnvelope, SECRET, TestClient } from './_helpers.ts';
import { startReceiver, type Receiver } from '../../webhooks/test/_receiver.ts';

const ADMIN = adminAuthorization(deriveAdminKey(SECRET));
let dir: string;
let relay: Relay | undefined;
let hooks: WebhookService | undefined;
let rx: Receiver | undefined;
let http: string;
let url: string;

async function start(expirySweepMs?: number): Promise<void> {
  hooks = new WebhookService({
    outbox: { path: join(dir, 'webhooks.db'), retry: { baseMs: 50, maxDelayMs: 200 } },
    delivery: { allowlist: ['127.0.0.1'] },
  });
  relay = createRelay({
    store: { path: join(dir, 'messages.db') },
    apiSecret: SECRET,
    webhooks: hooks,
    ...(expirySweepMs === undefined ? {} : { expirySweepMs }),
  });
  ({ url } = await relay.listen({ host: '127.0.0.1', port: 0 }));
  http = url.replace(/^ws/, 'http');
}
async function stop(): Promise<void> {
  await relay?.close();
  await hooks?.close();
}
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the test reads answers loosely
type Loose = any;
async function admin(
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: Loose }> {
  const res = await fetch(`${http}${path}`, {
    method,
    headers: {
      authorization: ADMIN,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, json: await res.json() };
}
async function until<T>(f: () => Promise<T>, ok: (v: T) => boolean, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out; last: ${JSON.stringify(v).slice(0, 800)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
async function freePort(): Promise<number> {
  const probe = await startReceiver({ SECRETS: 'whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' });
  await probe.stop();
  return probe.port;
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'latchkey-webhooks-'));
});
afterEach(async () => {
  await rx?.stop();
  await stop();
  rx = undefined;
  await rm(dir, { recursive: true, force: true });
});

describe('relay webhooks', () => {
  it('numbers events per endpoint, emits contact.expired after a shred, refuses events it never emits', async () => {
    await start(100);
    const refused = await admin('POST', '/admin/v1/webhooks', {
      url: 'http://127.0.0.1:9/hook',
      events: ['key.rotated'],
    });
    expect(refused.status).toBe(400);
    expect(refused.json.error).toMatchObject({
      code: 'BAD_REQUEST',
      message: expect.stringContaining('the relay never emits key.rotated'),
    });
    const port = await freePort();
    const added = await admin('POST', '/admin/v1/webhooks', {
      url: `http://127.0.0.1:${port}/hook`,
      events: ['contact.opened', 'message.stored', 'contact.expired'],
    });
    expect(added.status).toBe(201);
    expect(added.json.warning).toBeUndefined();
    rx = await startReceiver({ SECRETS: added.json.secret, PORT: String(port) });
    // Not on the allowlist: added, with the reason calls to it would be refused.
    const off = await admin('POST', '/admin/v1/webhooks', {
      url: 'http://10.20.30.40/hook',
      events: ['contact.closed'],
    });
    expect(off.status).toBe(201);
    expect(off.json.warning).toMatchObject({ code: 'ADDRESS_REFUSED' });

    const v = await TestClient.as(url, 'c2', 'v1', 'visitor');
    v.sendEnvelope(fakeEnvelope('c2', 'v1'));
    await v.next('ack');
    const shred = await admin('POST', '/admin/v1/contacts/c2/shred', {});
    expect(shred.status).toBe(200);
    v.ws.close();
    const got = await until(
      () => (rx as Receiver).received(),
      (r) => r.length >= 3,
    );
    expect(
      got.map((g) => {
        const b = JSON.parse(g.body) as { type: string; sequence: number };
        return [b.type, b.sequence];
      }),
    ).toEqual([
      ['contact.opened', 1],
      ['message.stored', 2],
      ['contact.expired', 3],
    ]);
  });

  it('emits lifecycle and message events, metadata only, verified by a real receiver', async () => {
    await start();
    const port = await freePort();
    const added = await admin('POST', '/admin/v1/webhooks', {
      url: `http://127.0.0.1:${port}/hook`,
      description: 'crm',
    });
    expect(added.status).toBe(201);
    expect(added.json.secret).toMatch(/^whsec_/);
    rx = await startReceiver({ SECRETS: added.json.secret, PORT: String(port) });

    const v = await TestClient.as(url, 'c1', 'v1', 'visitor');
    const a = await TestClient.as(url, 'c1', 'a1', 'agent');
    const env = fakeEnvelope('c1', 'v1');
    v.sendEnvelope(env);
    const seq = (await v.next('ack')).seq;
    v.sendEnvelope(env); // a retry: duplicate, no second event
    await v.next('ack');
    expect(
      (await admin('POST', '/admin/v1/contacts/c1/kick', { participantId: 'a1' })).status,
    ).toBe(200);
    expect((await admin('POST', '/admin/v1/contacts/c1/close', {})).status).toBe(200);
    expect(
      (await admin('POST', '/admin/v1/contacts/c1/expiry', { expiresAt: Date.now() - 1 })).status,
    ).toBe(200);
    v.ws.close();
    a.ws.close();

    const want = [
      'contact.opened',
      'participant.joined',
      'participant.joined',
      'message.stored',
      'participant.kicked',
      'contact.closed',
      'contact.expired',
    ];
    const got = await until(
      () => (rx as Receiver).received(),
      (r) => r.length >= want.length,
    );
    expect(got.map((g) => g.type)).toEqual(want);
    const msg = JSON.parse(got[3]?.body ?? '{}');
    expect(msg.data).toEqual({
      contactId: 'c1',
      seq,
      senderId: 'v1',
      size: 40,
      time: expect.any(Number),
    });
    // Never ciphertext, nonce, signature or anything else of the envelope.
    for (const g of got)
      for (const secret of [env.ciphertext, env.nonce, env.sig, env.msgId])
        expect(g.body).not.toContain(secret);

    const list = await admin('GET', '/admin/v1/webhooks');
    expect(list.json.endpoints).toHaveLength(1);
    expect(list.json.endpoints[0].status).toMatchObject({ pending: 0, dead: 0, lastError: null });
    const id = list.json.endpoints[0].id as string;
    expect((await admin('POST', `/admin/v1/webhooks/${id}/test`, {})).json).toEqual({
      ok: true,
      status: 204,
      error: null,
    });
    expect((await admin('GET', `/admin/v1/webhooks/${id}/dead-letters`)).json).toEqual({
      deadLetters: [],
    });
    expect((await admin('POST', `/admin/v1/webhooks/${id}/replay`, {})).json).toEqual({
      replayed: 0,
    });
    const rotated = await admin('POST', `/admin/v1/webhooks/${id}/rotate-secret`, {
      overlapSeconds: 60,
    });
    expect(rotated.json.endpoint.secrets).toBe(2);
    expect((await admin('POST', '/admin/v1/webhooks', { url: 'ftp://x' })).status).toBe(400);
    expect((await admin('DELETE', `/admin/v1/webhooks/${id}`)).status).toBe(200);
    expect((await admin('GET', `/admin/v1/webhooks/${id}`)).status).toBe(404);
    expect((await fetch(`${http}/admin/v1/webhooks`)).status).toBe(401);
  });

  it('an unreachable endpoint shows its error; dead letters can be listed and replayed', async () => {
    await start();
    const added = await admin('POST', '/admin/v1/webhooks', {
      url: 'http://10.1.2.3/hook',
      events: ['contact.closed'],
    });
    const id = added.json.endpoint.id as string;
    const v = await TestClient.as(url, 'c2', 'v1', 'visitor');
    await admin('POST', '/admin/v1/contacts/c2/close', {});
    v.ws.close();
    const st = await until(
      () => admin('GET', `/admin/v1/webhooks/${id}`),
      (r) => r.json.endpoint.status.lastError !== null,
    );
    expect(st.json.endpoint.status.lastError).toMatchObject({
      code: 'ADDRESS_REFUSED',
      message: expect.stringContaining('10.1.2.3'),
    });
    expect(st.json.endpoint.events).toEqual(['contact.closed']);
  });

  it('receiver down, relay restarted: every message event arrives once, in order', async () => {
    await start();
    const port = await freePort();
    const added = await admin('POST', '/admin/v1/webhooks', {
      url: `http://127.0.0.1:${port}/hook`,
      events: ['message.stored'],
    });
    const v = await TestClient.as(url, 'c3', 'v1', 'visitor');
    for (let i = 0; i < 5; i++) {
      v.sendEnvelope(fakeEnvelope('c3', 'v1'));
      await v.next('ack');
    }
    v.ws.close();
    await stop();
    await start();
    const v2 = await TestClient.as(url, 'c3', 'v1', 'visitor');
    for (let i = 0; i < 3; i++) {
      v2.sendEnvelope(fakeEnvelope('c3', 'v1'));
      await v2.next('ack');
    }
    v2.ws.close();
    rx = await startReceiver({ SECRETS: added.json.secret, PORT: String(port) });
    await until(
      () => (rx as Receiver).received(),
      (r) => r.length >= 8,
    );
    await new Promise((r) => setTimeout(r, 300));
    const got = await rx.received();
    expect(got.map((g) => JSON.parse(g.body).data.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(new Set(got.map((g) => g.id)).size).toBe(8);
  });
});
