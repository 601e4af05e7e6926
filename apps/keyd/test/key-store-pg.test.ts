/**
 * The key service with its wrapped keys on PostgreSQL (`keyStoreUrl`): two key services over
 * one key database hand out one key per contact, however the requests are spread; malformed
 * key store settings are refused before anything is opened.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { mintToken } from '@latchkey/tokens';
import { testPostgres } from '../../../packages/keys/test/_postgres.ts';
import { openChosenKeyManager, openKeyService } from '../src/index.ts';

const secret = new Uint8Array(32).fill(3);
const masterKey = new Uint8Array(32).fill(4);

async function fetchKey(url: string, contactId: string): Promise<string> {
  const token = await mintToken(secret, {
    contactId,
    participantId: 'p1',
    role: 'visitor',
    ttlSeconds: 60,
  });
  const res = await fetch(`${url}/v1/contact-key`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { key: string }).key;
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
  });
}
