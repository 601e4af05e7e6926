/**
 * The key service with its wrapped keys on PostgreSQL (`keyStoreUrl`): two key services over
 * one key database hand out one key per contact, however the requests are spread; malformed
 * key store settings are refused before anything is opened. With the key database on
 * PostgreSQL the service's own state is shared too (issue 17): one service key, one access-log
 * chain, membership decided once, and one rotation when two key services get the same kick.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { adminAuthorization, deriveAdminKey, mintToken } from '@latchkey/tokens';
import { openPgServiceState } from '@latchkey/keys/postgres';
import { testPostgres } from '../../../packages/keys/test/_postgres.ts';
import { openChosenKeyManager, openKeyService } from '../src/index.ts';

const secret = new Uint8Array(32).fill(3);
const masterKey = new Uint8Array(32).fill(4);

async function askKey(
  url: string,
  contactId: string,
  participantId = 'p1',
): Promise<{ status: number; body: { key?: string; epoch?: number; error?: { code: string } } }> {
  const token = await mintToken(secret, {
    contactId,
    participantId,
    role: 'visitor',
    ttlSeconds: 60,
  });
  const res = await fetch(`${url}/v1/contact-key`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
  });
  return { status: res.status, body: (await res.json()) as never };
}

async function fetchKey(url: string, contactId: string): Promise<string> {
  const r = await askKey(url, contactId);
  expect(r.status).toBe(200);
  return r.body.key!;
}

async function admin(url: string, path: string, body: object): Promise<Record<string, unknown>> {
  const res = await fetch(`${url}/admin/v1${path}`, {
    method: 'POST',
    headers: {
      authorization: adminAuthorization(deriveAdminKey(secret)),
      'content-type': 'application/json',
    },
    body: JSON.stringify(body),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, unknown>;
}

describe('key store URL settings', () => {
  it('refuses a non-postgres URL and the http store model', async () => {
    await expect(
      openChosenKeyManager({ kind: 'internal' }, '/nonexistent/keys.db', masterKey, 'mysql://x/y'),
    ).rejects.toThrow(TypeError);
    await expect(
      openChosenKeyManager(
        { kind: 'http', url: 'https://km.example', model: 'store', secret },
        '/nonexistent/keys.db',
        masterKey,
        'postgres://x/y',
      ),
    ).rejects.toThrow(RangeError);
  });
});

const server = await testPostgres('key service on a PostgreSQL key store');
afterAll(() => server?.stop());

if (server) {
  describe('openKeyService with keyStoreUrl', () => {
    it('two key services on one key database give every contact one key', async () => {
      const keyStoreUrl = await server.newDatabase();
      const dirs = [0, 1].map(() => mkdtempSync(join(tmpdir(), 'latchkey-keyd-pg-')));
      const services = await Promise.all(
        dirs.map((dataDir) =>
          openKeyService({
            dataDir,
            host: '127.0.0.1',
            port: 0,
            apiSecret: secret,
            masterKey,
            keyStoreUrl,
            allowPlainKeyDelivery: true,
          }),
        ),
      );
      try {
        const ids = Array.from({ length: 8 }, (_, i) => `shared${i}`);
        const got = await Promise.all(
          ids.flatMap((id) => services.map(async (s) => ({ id, key: await fetchKey(s.url, id) }))),
        );
        for (const id of ids)
          expect(new Set(got.filter((g) => g.id === id).map((g) => g.key)).size).toBe(1);
        expect(new Set(got.map((g) => g.key)).size).toBe(ids.length);
      } finally {
        for (const s of services) await s.close();
        for (const d of dirs) rmSync(d, { recursive: true, force: true });
      }
    });

    it('a key service moving to the shared state keeps its kicks: the kicked stay out', async () => {
      const keyStoreUrl = await server.newDatabase();
      const dataDir = mkdtempSync(join(tmpdir(), 'latchkey-keyd-pg-'));
      try {
        const alone = await openKeyService({
          dataDir,
          host: '127.0.0.1',
          port: 0,
          apiSecret: secret,
          masterKey,
          allowPlainKeyDelivery: true,
        });
        try {
          expect((await askKey(alone.url, 'moved', 'v1')).status).toBe(200);
          expect((await askKey(alone.url, 'moved', 'v2')).status).toBe(200);
          await admin(alone.url, '/contacts/moved/kick', { participantId: 'v1' });
        } finally {
          await alone.close();
        }
        const shared = await openKeyService({
          dataDir,
          host: '127.0.0.1',
          port: 0,
          apiSecret: secret,
          masterKey,
          keyStoreUrl,
          allowPlainKeyDelivery: true,
        });
        try {
          expect((await askKey(shared.url, 'moved', 'v1')).status).toBe(403);
          expect((await askKey(shared.url, 'moved', 'v2')).status).toBe(200);
        } finally {
          await shared.close();
        }
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    });

    it('two key services share the service key, the membership, the access log and one rotation per kick', async () => {
      const keyStoreUrl = await server.newDatabase();
      const dirs = [0, 1].map(() => mkdtempSync(join(tmpdir(), 'latchkey-keyd-pg-')));
      const [a, b] = await Promise.all(
        dirs.map((dataDir) =>
          openKeyService({
            dataDir,
            host: '127.0.0.1',
            port: 0,
            apiSecret: secret,
            masterKey,
            keyStoreUrl,
            allowPlainKeyDelivery: true,
          }),
        ),
      );
      try {
        // One certificate authority: clients pin one key whichever service answers.
        expect(a!.servicePublicKey).toBe(b!.servicePublicKey);
        for (let round = 0; round < 5; round++) {
          const id = `kick${round}`;
          expect((await askKey(a!.url, id, 'v1')).status).toBe(200);
          expect((await askKey(b!.url, id, 'v2')).status).toBe(200);
          // The same kick reaches both key services at the same moment (a retrying admin tool
          // behind a balancer): the key is rotated once.
          const answers = await Promise.all(
            [a!, b!].map((s) => admin(s.url, `/contacts/${id}/kick`, { participantId: 'v1' })),
          );
          expect(answers.map((x) => x.rotatedEpoch)).toEqual([1, 1]);
          // Removed at one, refused at the other.
          const refused = await askKey(b!.url, id, 'v1');
          expect(refused.status).toBe(403);
          const after = await askKey(a!.url, id, 'v2');
          expect(after.body.epoch).toBe(1);
        }
        // Both wrote one chain: it verifies with no gap, and holds both services' records.
        const state = await openPgServiceState({ url: keyStoreUrl, masterKey });
        try {
          const verdict = await state.accessLog.verify();
          expect(verdict.ok).toBe(true);
          const records = await state.accessLog.list({ limit: 1000 });
          expect(records.filter((r) => r.outcome === 'granted')).toHaveLength(15);
          expect(records.filter((r) => r.outcome === 'denied')).toHaveLength(5);
        } finally {
          await state.close();
        }
      } finally {
        await a!.close();
        await b!.close();
        for (const d of dirs) rmSync(d, { recursive: true, force: true });
      }
    });
  });
}
