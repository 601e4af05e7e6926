/**
 * The agent queue outlives a relay restart (docs/admin-api.md "Queue"): `startRelay` keeps it in
 * `<dataDir>/relay/queue.db`, so a waiting contact and a claim are still there after a stop and
 * a start on the same data directory, and the claim still wins over a second agent.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { QUEUE_PATHS } from '@latchkey/protocol';
import { adminAuthorization, deriveAdminKey } from '@latchkey/tokens';
import { startRelay } from '../../apps/relay/src/index.ts';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

describe('the agent queue across a relay restart', () => {
  it('keeps waiting contacts and claims', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'latchkey-queue-'));
    dirs.push(dir);
    const apiSecret = crypto.getRandomValues(new Uint8Array(32));
    const authorization = adminAuthorization(deriveAdminKey(apiSecret));
    const call = async (base: string, method: string, path: string, body?: unknown) => {
      const res = await fetch(`${base}${path}`, {
        method,
        headers: { authorization, ...(body ? { 'content-type': 'application/json' } : {}) },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
      return { status: res.status, body: (await res.json()) as { entries?: unknown[] } };
    };
    const opts = { dataDir: dir, host: '127.0.0.1', port: 0, apiSecret };
    let relay = await startRelay(opts);
    let base = relay.url.replace('ws', 'http');
    expect((await call(base, 'POST', QUEUE_PATHS.queue, { contactId: 'q1' })).status).toBeLessThan(
      300,
    );
    expect((await call(base, 'POST', QUEUE_PATHS.queue, { contactId: 'q2' })).status).toBeLessThan(
      300,
    );
    expect((await call(base, 'POST', QUEUE_PATHS.claim('q1'), { agentId: 'ann' })).status).toBe(
      200,
    );
    await relay.close();

    relay = await startRelay(opts);
    base = relay.url.replace('ws', 'http');
    try {
      const listed = await call(base, 'GET', QUEUE_PATHS.queue);
      expect(JSON.stringify(listed.body)).toContain('"q2"');
      expect((await call(base, 'POST', QUEUE_PATHS.claim('q1'), { agentId: 'bob' })).status).toBe(
        409,
      );
      const mine = await call(base, 'GET', QUEUE_PATHS.agentContacts('ann'));
      expect(JSON.stringify(mine.body)).toContain('"q1"');
    } finally {
      await relay.close();
    }
  });
});
