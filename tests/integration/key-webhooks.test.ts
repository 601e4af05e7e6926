/**
 * The key service's signed webhooks (docs/webhooks.md): a real key service (openKeyService with
 * its outbox in `keys/webhooks.db`), endpoints managed through its admin API, and a receiver
 * that verifies every call with the published `standardwebhooks` package. `key.rotated` on kick,
 * transfer, a requested and a scheduled rotation; `contact.shredded` on shred (once) and on the
 * retention sweep's destroy.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Webhook } from 'standardwebhooks';
import { afterEach, describe, expect, it } from 'vitest';
import { KeyReceiver } from '@latchkey/client';
import { openKeyService, keyServicePaths } from '@latchkey/keyd';
import { ADMIN_PATHS, WEBHOOK_PATHS, WebhookSecretResponse } from '@latchkey/protocol';
import { adminAuthorization, deriveAdminKey, mintToken } from '@latchkey/tokens';
import { until } from './harness.ts';

const secret = crypto.getRandomValues(new Uint8Array(32));
const masterKey = crypto.getRandomValues(new Uint8Array(32));
const ADMIN = adminAuthorization(deriveAdminKey(secret));

interface Received {
  id: string;
  type: string;
  data: Record<string, unknown>;
}

/** A receiver that accepts only calls `standardwebhooks` verifies with the endpoint's secret. */
async function startReceiver(): Promise<{
  url: string;
  received: Received[];
  rejected: () => number;
  setSecret(s: string): void;
  close(): Promise<void>;
}> {
  const received: Received[] = [];
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
        const event = verifier.verify(body, headers) as {
          type: string;
          data: Record<string, unknown>;
        };
        received.push({ id: headers['webhook-id'], type: event.type, data: event.data });
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
    url: `http://127.0.0.1:${port}/hook`,
    received,
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

async function setup(over: { rotateAfterMs?: number } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'latchkey-key-webhooks-'));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const svc = await openKeyService({
    dataDir: dir,
    host: '127.0.0.1',
    port: 0,
    apiSecret: secret,
    masterKey,
    minRotateAgeMs: 0,
    rotateAfterMessages: 10,
    keySweepMs: 3_600_000,
    // The receiver listens on loopback, which delivery refuses unless allowed.
    webhooks: { allowlist: ['127.0.0.1'] },
    ...over,
  });
  cleanup.push(() => svc.close());
  const receiver = await startReceiver();
  cleanup.push(() => receiver.close());

  const call = async (
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: unknown }> => {
    const res = await fetch(`${svc.url}${path}`, {
      method,
      headers: {
        authorization: ADMIN,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: await res.json() };
  };
  const key = async (
    contactId: string,
    participantId: string,
    body: unknown = {},
  ): Promise<{ status: number; body: { epoch?: number; rotated?: boolean } }> => {
    const token = await mintToken(secret, {
      contactId,
      participantId,
      role: participantId.startsWith('agent') ? 'agent' : 'visitor',
      ttlSeconds: 600,
    });
    const res = await fetch(`${svc.url}/v1/contact-key`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      // Over plain HTTP a key comes only sealed to the caller's delivery key.
      body: JSON.stringify({
        ...(body as object),
        delivery: new KeyReceiver('x25519', participantId).request(),
      }),
    });
    return {
      status: res.status,
      body: (await res.json()) as { epoch?: number; rotated?: boolean },
    };
  };

  const added = await call('POST', WEBHOOK_PATHS.endpoints, {
    url: receiver.url,
    events: ['key.rotated', 'contact.shredded'],
  });
  expect(added.status).toBe(201);
  const ep = WebhookSecretResponse.parse(added.body);
  receiver.setSecret(ep.secret);
  expect(existsSync(keyServicePaths(dir).webhooks)).toBe(true);
  return { dir, svc, receiver, call, key, endpointId: ep.endpoint.id };
}

const events = (r: Received[], type: string): Record<string, unknown>[] =>
  r.filter((e) => e.type === type).map((e) => e.data);

describe('key service webhooks', () => {
  it('key.rotated on kick, transfer and a requested rotation; contact.shredded once per shred', async () => {
    const s = await setup();
    expect((await s.key('kw-1', 'visitor-1')).body.epoch).toBe(0);
    expect((await s.key('kw-1', 'agent-1')).status).toBe(200);

    const kicked = await s.call('POST', ADMIN_PATHS.kick('kw-1'), { participantId: 'visitor-1' });
    expect(kicked).toMatchObject({ status: 200, body: { rotatedEpoch: 1 } });
    const moved = await s.call('POST', ADMIN_PATHS.transfer('kw-1'), {
      from: 'agent-1',
      to: 'agent-2',
    });
    expect(moved).toMatchObject({ status: 200, body: { rotatedEpoch: 2 } });
    const asked = await s.key('kw-1', 'agent-2', { rotate: { ifEpoch: 2 } });
    expect(asked.body).toMatchObject({ epoch: 3, rotated: true });
    // A second request for the same epoch does not rotate (compare-and-set): no event.
    const again = await s.key('kw-1', 'agent-2', { rotate: { ifEpoch: 2 } });
    expect(again.body.epoch).toBe(3);
    expect(again.body.rotated).not.toBe(true);

    await until(
      () => events(s.receiver.received, 'key.rotated').length >= 3,
      20_000,
      'three key.rotated',
    );
    expect(events(s.receiver.received, 'key.rotated').map((d) => [d.contactId, d.epoch])).toEqual([
      ['kw-1', 1],
      ['kw-1', 2],
      ['kw-1', 3],
    ]);

    expect((await s.call('POST', ADMIN_PATHS.shred('kw-1'), {})).status).toBe(200);
    expect((await s.call('POST', ADMIN_PATHS.shred('kw-1'), {})).status).toBe(200);
    // The sweep after the admin shred (its expiry is now) destroys again, but reports nothing new.
    await s.svc.sweepExpired();
    await until(
      () => events(s.receiver.received, 'contact.shredded').length >= 1,
      20_000,
      'contact.shredded',
    );
    const hooks = await s.call('GET', WEBHOOK_PATHS.endpoints);
    expect(hooks.body).toMatchObject({
      endpoints: [{ id: s.endpointId, status: { pending: 0, dead: 0, delivered: 4 } }],
    });
    expect(events(s.receiver.received, 'contact.shredded')).toEqual([
      { contactId: 'kw-1', time: expect.any(Number) as number },
    ]);
    expect(s.receiver.rejected()).toBe(0);
    // Every event id is unique (receivers deduplicate on it).
    expect(new Set(s.receiver.received.map((e) => e.id)).size).toBe(s.receiver.received.length);
  });

  it('contact.shredded from the retention sweep, key.rotated from a scheduled rotation', async () => {
    const s = await setup({ rotateAfterMs: 1 });
    expect((await s.key('kw-2', 'visitor-1')).body.epoch).toBe(0);
    // The epoch is older than 1 ms at the next fetch of the current key: rotated on schedule.
    await new Promise((r) => setTimeout(r, 20));
    expect((await s.key('kw-2', 'visitor-1')).body).toMatchObject({ epoch: 1, rotated: true });
    await until(
      () => events(s.receiver.received, 'key.rotated').length >= 1,
      20_000,
      'scheduled key.rotated',
    );
    expect(events(s.receiver.received, 'key.rotated')[0]).toMatchObject({
      contactId: 'kw-2',
      epoch: 1,
    });

    // Retention: the contact expires, and the sweep destroys its keys.
    expect(
      (await s.call('POST', ADMIN_PATHS.expiry('kw-2'), { expiresAt: Date.now() + 50 })).status,
    ).toBe(200);
    await new Promise((r) => setTimeout(r, 100));
    expect(await s.svc.sweepExpired()).toEqual(['kw-2']);
    await until(
      () => events(s.receiver.received, 'contact.shredded').length >= 1,
      20_000,
      'swept contact.shredded',
    );
    expect(events(s.receiver.received, 'contact.shredded')).toEqual([
      { contactId: 'kw-2', time: expect.any(Number) as number },
    ]);
    expect(s.receiver.rejected()).toBe(0);
  });
});
