/**
 * The PostgreSQL outbox shared by several processes (docs/webhooks.md "Several processes"):
 * two outboxes with pools of their own stand for two processes on one database. Every event is
 * delivered exactly once and in per-endpoint order while both poll; a claim abandoned by a
 * "crashed" process (claimed, then its pool ended) is delivered by the other after the lease; a
 * process with another outbox key, or none, is refused with a typed error.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LatchkeyError } from '@latchkey/protocol';
import { openPool } from '@latchkey/storage/postgres';
import { PgWebhookOutbox, WebhookOutboxKeyError, WebhookService } from '../src/index.ts';
import { startCollector, type Collector } from './_collector.ts';
import { testPostgres, type TestPostgres } from './_postgres.ts';

const server: TestPostgres | null = testPostgres('PostgreSQL webhook outbox tests');
const LOOPBACK = { allowlist: ['127.0.0.1'] };

let rx: Collector;
let dir: string;
beforeAll(async () => {
  rx = await startCollector();
  dir = mkdtempSync(join(tmpdir(), 'lk-webhooks-pg-'));
});
afterAll(async () => {
  await rx.close();
  rmSync(dir, { recursive: true, force: true });
});

async function until(what: string, ok: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const stored = (n: number) => ({ contactId: 'c1', seq: n, senderId: 'v1', size: 10, time: n });

describe.runIf(server !== null)('PostgreSQL outbox shared by two processes', () => {
  it('delivers every event exactly once, in per-endpoint order, while both poll', async () => {
    const url = await (server as TestPostgres).newDatabase();
    const key = randomBytes(32);
    const opts = { url, secretKey: key, pollMs: 20 };
    const delivered = { a: 0, b: 0 };
    const a = new WebhookService({
      outbox: opts,
      delivery: LOOPBACK,
      log: (e) => void (e.event === 'webhook-delivered' && delivered.a++),
    });
    const b = new WebhookService({
      outbox: opts,
      delivery: LOOPBACK,
      log: (e) => void (e.event === 'webhook-delivered' && delivered.b++),
    });
    try {
      await Promise.all([a.ready(), b.ready()]);
      const paths = ['/two/e1', '/two/e2', '/two/e3'];
      const eps = [];
      for (const p of paths)
        eps.push((await a.outbox.addEndpoint({ url: rx.base + p }, Date.now())).endpoint);
      const before = rx.calls.length;
      const N = 40;
      const ids = new Set<string>();
      for (let i = 1; i <= N; i++) {
        const id = (i % 2 === 0 ? a : b).emit('message.stored', stored(i));
        expect(id).not.toBeNull();
        ids.add(id as string);
      }
      await rx.waitFor(before + N * paths.length);
      await until('every delivery recorded', async () => {
        const infos = await b.outbox.listEndpoints(Date.now());
        return infos.every((e) => e.status.delivered === N && e.status.pending === 0);
      });
      await Promise.all([a.idle(), b.idle()]);
      const calls = rx.calls.slice(before);
      expect(calls).toHaveLength(N * paths.length);
      for (const p of paths) {
        const mine = calls.filter((c) => c.path === p);
        expect(mine.map((c) => c.sequence)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
        expect(new Set(mine.map((c) => c.id))).toEqual(ids);
      }
      expect(delivered.a + delivered.b).toBe(N * paths.length);
      // Both processes took part (each wakes on its own events and polls for the other's).
      expect(delivered.a).toBeGreaterThan(0);
      expect(delivered.b).toBeGreaterThan(0);
      expect(eps).toHaveLength(3);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('a claim abandoned by a crashed process is delivered by the other after the lease, once', async () => {
    const url = await (server as TestPostgres).newDatabase();
    const key = randomBytes(32);
    const leaseMs = 1_500;
    const crashed = await PgWebhookOutbox.open({ url, secretKey: key, leaseMs });
    const { endpoint } = await crashed.addEndpoint({ url: `${rx.base}/crash` }, Date.now());
    const first = await crashed.emit('message.stored', stored(1), Date.now());
    const claimedAt = Date.now();
    const claim = await crashed.due(claimedAt);
    expect(claim.due.map((d) => d.eventId)).toEqual([first]);
    // The process dies mid-delivery: its claim stays in the database, nothing is recorded.
    await crashed.close();

    const before = rx.calls.length;
    const other = new WebhookService({
      outbox: { url, secretKey: key, leaseMs, pollMs: 50 },
      delivery: { ...LOOPBACK, timeoutMs: 500 },
      autoStart: false,
    });
    try {
      await other.ready();
      // While the lease runs, the live process does not take the delivery.
      await other.runDue();
      expect(rx.calls.length).toBe(before);
      other.start();
      await rx.waitFor(before + 1);
      const got = rx.calls.slice(before);
      expect(got.map((c) => [c.path, c.id, c.sequence])).toEqual([['/crash', first, 1]]);
      expect(got[0]?.at).toBeGreaterThanOrEqual(claimedAt + leaseMs);
      // The queue moves on in order, and the taken-over delivery is not sent again.
      const second = await other.emitAsync('message.stored', stored(2));
      await rx.waitFor(before + 2);
      await until('both recorded', async () => {
        const info = await other.outbox.endpoint(endpoint.id, Date.now());
        return info?.status.delivered === 2;
      });
      await other.idle();
      expect(rx.calls.slice(before).map((c) => [c.id, c.sequence])).toEqual([
        [first, 1],
        [second, 2],
      ]);
    } finally {
      await other.close();
    }
  });

  it('a process that stops cleanly leaves no claim behind: the other goes on at once', async () => {
    const url = await (server as TestPostgres).newDatabase();
    const key = randomBytes(32);
    const opts = { url, secretKey: key, leaseMs: 120_000, pollMs: 20 };
    const a = new WebhookService({ outbox: opts, delivery: LOOPBACK });
    await a.ready();
    const { endpoint } = await a.outbox.addEndpoint({ url: `${rx.base}/stop` }, Date.now());
    const before = rx.calls.length;
    const N = 30;
    for (let i = 1; i <= N; i++) a.emit('message.stored', stored(i));
    await a.close();
    const b = new WebhookService({ outbox: opts, delivery: LOOPBACK });
    try {
      // Far sooner than the 120 s lease: nothing was left claimed.
      await until(
        'the rest delivered by the other process',
        async () => (await b.outbox.endpoint(endpoint.id, Date.now()))?.status.delivered === N,
        15_000,
      );
      await b.idle();
      const got = rx.calls.slice(before).filter((c) => c.path === '/stop');
      expect(got.map((c) => c.sequence)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
    } finally {
      await b.close();
    }
  });

  it('a late outcome of a claim that was taken over is not recorded over the new one', async () => {
    const url = await (server as TestPostgres).newDatabase();
    const key = randomBytes(32);
    const slow = await PgWebhookOutbox.open({ url, secretKey: key, leaseMs: 1_000 });
    const fast = await PgWebhookOutbox.open({ url, secretKey: key, leaseMs: 1_000 });
    try {
      const { endpoint } = await slow.addEndpoint({ url: `${rx.base}/late` }, 0);
      await slow.emit('contact.opened', { contactId: 'c', time: 0 }, 0);
      expect((await slow.due(0)).due).toHaveLength(1);
      // Racing for it while the lease runs: nothing for the other process.
      expect((await fast.due(500)).due).toHaveLength(0);
      const taken = await fast.due(1_000);
      expect(taken.due).toHaveLength(1);
      await slow.failed(
        endpoint.id,
        taken.due[0]?.eventSeq as number,
        {
          code: 'TIMEOUT',
          message: 'late',
          at: 1_100,
        },
        1_100,
      );
      expect(await fast.delivered(endpoint.id, taken.due[0]?.eventSeq as number, 1_200)).toBe(true);
      // The slow process's late success is not recorded either (its service logs claim-lost).
      expect(await slow.delivered(endpoint.id, taken.due[0]?.eventSeq as number, 1_250)).toBe(
        false,
      );
      const info = await fast.endpoint(endpoint.id, 1_300);
      expect(info?.status).toMatchObject({ delivered: 1, pending: 0, dead: 0 });
      expect((await slow.due(10_000)).due).toHaveLength(0);
    } finally {
      await Promise.all([slow.close(), fast.close()]);
    }
  });

  it('refuses a process with another outbox key, or none, with a typed error', async () => {
    const url = await (server as TestPostgres).newDatabase();
    const keyFile = join(dir, 'shared.key');
    const first = await PgWebhookOutbox.open({ url, keyFile });
    const same = await PgWebhookOutbox.open({ url, keyFile });
    await Promise.all([first.close(), same.close()]);
    const err = await PgWebhookOutbox.open({ url, secretKey: randomBytes(32) }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WebhookOutboxKeyError);
    expect(WebhookOutboxKeyError.isKeyError(err, 'MISMATCH')).toBe(true);
    expect(LatchkeyError.is(err, 'UNAVAILABLE')).toBe(true);
    expect(() => new PgWebhookOutbox({ url })).toThrow(WebhookOutboxKeyError);
    expect(() => new WebhookService({ outbox: { url } })).toThrow(
      expect.objectContaining({ problem: 'MISSING' }),
    );
    const svc = new WebhookService({ outbox: { url, secretKey: randomBytes(32) } });
    await expect(svc.ready()).rejects.toThrow(WebhookOutboxKeyError);
    await svc.close();
  });

  it('keeps the SQLite semantics: retries, dead letters, replay, retry, prune, rotation, sealed secrets', async () => {
    const url = await (server as TestPostgres).newDatabase();
    const key = randomBytes(32);
    const o = await PgWebhookOutbox.open({
      url,
      secretKey: key,
      retry: { baseMs: 100, maxDelayMs: 100, maxAgeMs: 250 },
      random: () => 0.5,
    });
    try {
      const { endpoint, secret } = await o.addEndpoint({ url: `${rx.base}/sem` }, 0);
      const other = await o.addEndpoint({ url: `${rx.base}/other`, events: ['contact.closed'] }, 0);
      const e1 = await o.emit('contact.opened', { contactId: 'c', time: 0 }, 0);
      const e2 = await o.emit('contact.opened', { contactId: 'c', time: 1 }, 1);
      // Only the head is due; a failure schedules it later, then dead-letters it.
      let d = await o.due(10);
      expect(d.due.map((x) => [x.eventId, x.sequence])).toEqual([[e1, 1]]);
      expect(d.due[0]?.secrets).toEqual([secret]);
      const err = { code: 'HTTP_STATUS' as const, message: 'endpoint answered 500', at: 10 };
      expect(await o.failed(endpoint.id, d.due[0]?.eventSeq as number, err, 10)).toBe(false);
      d = await o.due(20);
      expect(d.due).toEqual([]);
      expect(d.nextAt).toBeGreaterThan(20);
      d = await o.due(d.nextAt as number);
      expect(await o.failed(endpoint.id, d.due[0]?.eventSeq as number, err, 300)).toBe(true);
      expect((await o.deadLetters(endpoint.id)).map((x) => [x.eventId, x.sequence])).toEqual([
        [e1, 1],
      ]);
      // The queue moved on to event 2; replay puts 1 back ahead of anything later.
      d = await o.due(300);
      expect(d.due.map((x) => x.eventId)).toEqual([e2]);
      const e2Seq = d.due[0]?.eventSeq as number;
      expect(await o.replay(endpoint.id, 305)).toBe(1);
      // Event 2's call is in flight (claimed): the replayed head waits for it, one call at a time.
      expect((await o.due(306)).due).toEqual([]);
      await o.delivered(endpoint.id, e2Seq, 310);
      d = await o.due(320);
      expect(d.due.map((x) => [x.eventId, x.sequence])).toEqual([[e1, 1]]);
      await o.release(endpoint.id, d.due[0]?.eventSeq as number);
      expect(await o.retry(endpoint.id, 330)).toEqual({ pending: 1, dead: 0 });
      d = await o.due(330);
      await o.delivered(endpoint.id, d.due[0]?.eventSeq as number, 340);
      expect((await o.endpoint(endpoint.id, 350))?.status).toMatchObject({
        pending: 0,
        dead: 0,
        delivered: 2,
      });
      expect((await o.endpoint(other.endpoint.id, 350))?.status.pending).toBe(0);
      // Numbers are never reused: pruning keeps the endpoint's counter.
      expect(await o.prune(1_000)).toBe(2);
      await o.emit('contact.opened', { contactId: 'c', time: 2 }, 2_000);
      d = await o.due(2_000);
      expect(d.due[0]?.sequence).toBe(3);
      // Rotation: both secrets sign during the overlap; stored sealed.
      const rotated = await o.rotateSecret(endpoint.id, 2_000, 60_000);
      expect(await o.secrets(endpoint.id, 2_001)).toEqual([secret, rotated.secret]);
      const pool = openPool({ url, max: 1 });
      try {
        const rows = await pool.query<{ secrets: string }>('SELECT secrets FROM webhook_endpoints');
        const text = JSON.stringify(rows.rows);
        expect(text).not.toContain(secret);
        expect(text).not.toContain(rotated.secret);
      } finally {
        await pool.end();
      }
      expect(await o.removeEndpoint(endpoint.id)).toBe(true);
      await expect(o.deadLetters(endpoint.id)).rejects.toThrow(LatchkeyError);
    } finally {
      await o.close();
    }
  });
});
