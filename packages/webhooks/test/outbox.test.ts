import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebhookOutbox, WebhookService, type DeliveryResult, type Timers } from '../src/index.ts';

/** Timers that only fire when the test says so. */
function manualTimers(): Timers & { pending: number } {
  const set = new Set<unknown>();
  return {
    setTimeout: (_fn, _ms) => {
      const h = {};
      set.add(h);
      return h;
    },
    clearTimeout: (h) => void set.delete(h),
    get pending() {
      return set.size;
    },
  };
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lk-outbox-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const data = (n: number) => ({
  contactId: 'c1',
  seq: n,
  senderId: 'v1',
  size: 100 + n,
  time: 1_000 + n,
});

describe('outbox', () => {
  it('keeps per-endpoint order: N+1 waits until N is delivered or dead-lettered; then dead letters replay', async () => {
    let clock = 1_000_000;
    const calls: { url: string; id: string; seq: number }[] = [];
    let failing = true;
    const send = async (
      url: string,
      h: Record<string, string>,
      body: string,
    ): Promise<DeliveryResult> => {
      calls.push({
        url,
        id: h['webhook-id'] ?? '',
        seq: (JSON.parse(body) as { data: { seq: number } }).data.seq,
      });
      return failing && url.startsWith('https://a.')
        ? { ok: false, status: 503, code: 'HTTP_STATUS', message: 'endpoint answered 503' }
        : { ok: true, status: 204 };
    };
    const svc = new WebhookService({
      outbox: {
        path: join(dir, 'w.db'),
        retry: { baseMs: 1000, maxDelayMs: 8000, maxAgeMs: 60_000 },
      },
      now: () => clock,
      timers: manualTimers(),
      autoStart: false,
      send,
    });
    const a = (await svc.outbox.addEndpoint({ url: 'https://a.example/hook' }, clock)).endpoint.id;
    const b = (
      await svc.outbox.addEndpoint(
        { url: 'https://b.example/hook', events: ['message.stored'] },
        clock,
      )
    ).endpoint.id;
    await svc.outbox.addEndpoint(
      { url: 'https://c.example/hook', events: ['contact.closed'] },
      clock,
    );
    const ids = [1, 2, 3].map((n) => svc.emit('message.stored', data(n)));
    expect(ids.every((i) => i?.startsWith('evt_'))).toBe(true);

    await svc.runDue();
    // b got #1, a failed #1; c subscribes to something else.
    expect(calls.map((c) => [c.url[8], c.seq]).sort()).toEqual([
      ['a', 1],
      ['b', 1],
    ]);
    await svc.runDue();
    expect(calls.map((c) => [c.url[8], c.seq]).slice(2)).toEqual([['b', 2]]); // a is backing off
    await svc.runDue();
    await svc.runDue();
    expect(calls.filter((c) => c.url.startsWith('https://b.')).map((c) => c.seq)).toEqual([
      1, 2, 3,
    ]);
    expect((await svc.outbox.endpoint(a, clock))?.status).toMatchObject({
      pending: 3,
      dead: 0,
      lastError: { code: 'HTTP_STATUS' },
    });

    // Drive a's retries to the end of its window: #1 is dead-lettered, then #2 and #3 have
    // aged out too, so each dies after one attempt; never out of order.
    for (let i = 0; i < 40; i++) {
      clock += 8_000;
      await svc.runDue();
    }
    const aSeqs = calls.filter((c) => c.url.startsWith('https://a.')).map((c) => c.seq);
    expect(aSeqs).toEqual([...aSeqs].sort((x, y) => x - y));
    expect(aSeqs.filter((s) => s === 1).length).toBeGreaterThan(4);
    const dead = await svc.outbox.deadLetters(a);
    expect(dead.map((d) => d.eventId)).toEqual(ids);
    expect(dead[0]).toMatchObject({ type: 'message.stored', lastError: { code: 'HTTP_STATUS' } });
    expect((await svc.outbox.endpoint(b, clock))?.status).toMatchObject({
      pending: 0,
      delivered: 3,
      lastError: null,
    });

    // Replay after the receiver recovers: all three arrive, in order, with their original ids.
    failing = false;
    calls.length = 0;
    expect(await svc.outbox.replay(a, clock, [ids[1] as string])).toBe(1);
    expect(await svc.outbox.replay(a, clock)).toBe(2);
    for (let i = 0; i < 3; i++) await svc.runDue();
    expect(calls.map((c) => [c.seq, c.id])).toEqual(ids.map((id, i) => [i + 1, id]));
    expect((await svc.outbox.endpoint(a, clock))?.status).toMatchObject({
      pending: 0,
      dead: 0,
      delivered: 3,
      lastError: null,
    });
    await svc.close();
  });

  it('backs off exponentially with jitter, up to the window', async () => {
    const o = new WebhookOutbox({
      path: join(dir, 'b.db'),
      retry: { baseMs: 1000, maxDelayMs: 16_000, maxAgeMs: 100_000 },
      random: () => 0.5,
    });
    const ep = (await o.addEndpoint({ url: 'https://x.example' }, 0)).endpoint.id;
    o.emit('contact.opened', { contactId: 'c', time: 0 }, 0);
    let now = 0;
    const delays: number[] = [];
    for (;;) {
      const { due, nextAt } = await o.due(now);
      if (due.length === 0) {
        if (nextAt === null) break;
        delays.push(nextAt - now);
        now = nextAt;
        continue;
      }
      o.failed(
        ep,
        (due[0] as { eventSeq: number }).eventSeq,
        { code: 'TIMEOUT', message: 't', at: now },
        now,
      );
    }
    expect(delays.slice(0, 6)).toEqual([750, 1500, 3000, 6000, 12_000, 12_000]);
    expect(now).toBeLessThanOrEqual(100_000);
    expect(o.deadLetters(ep)).toHaveLength(1);
    o.close();
  });

  it('survives a restart: the queue, secrets and status are on disk', async () => {
    const path = join(dir, 'r.db');
    let o = new WebhookOutbox({ path });
    const { endpoint, secret } = await o.addEndpoint({ url: 'https://x.example' }, 5);
    o.emit('participant.joined', { contactId: 'c', participantId: 'p', role: 'agent', time: 5 }, 5);
    o.close();
    o = new WebhookOutbox({ path });
    const due = (await o.due(10)).due;
    expect(due).toHaveLength(1);
    expect(due[0]).toMatchObject({ endpointId: endpoint.id, secrets: [secret] });
    expect(JSON.parse((due[0] as { payload: string }).payload)).toEqual({
      type: 'participant.joined',
      timestamp: new Date(5).toISOString(),
      sequence: 1,
      data: { contactId: 'c', participantId: 'p', role: 'agent', time: 5 },
    });
    o.close();
  });

  it('rotates secrets with an overlap: two signatures, then the new one alone', async () => {
    const o = new WebhookOutbox({ path: join(dir, 's.db') });
    const { endpoint, secret: s1 } = await o.addEndpoint({ url: 'https://x.example' }, 0);
    const { secret: s2, endpoint: after } = await o.rotateSecret(endpoint.id, 1000, 60_000);
    expect(after.secrets).toBe(2);
    expect(await o.secrets(endpoint.id, 1000)).toEqual([s1, s2]);
    expect(await o.secrets(endpoint.id, 61_001)).toEqual([s2]);
    await expect(o.rotateSecret('ep_unknown123', 0)).rejects.toThrow(/no such webhook endpoint/);
    o.close();
  });

  it('refuses event data outside the schema (no ciphertext can slip in)', async () => {
    const o = new WebhookOutbox({ path: join(dir, 'z.db') });
    await o.addEndpoint({ url: 'https://x.example' }, 0);
    expect(() =>
      o.emit('message.stored', { ...data(1), ciphertext: 'AAAA' } as never, 0),
    ).toThrow();
    o.close();
  });

  it('stores nothing when no endpoint subscribes', () => {
    const o = new WebhookOutbox({ path: join(dir, 'n.db') });
    expect(o.emit('contact.opened', { contactId: 'c', time: 0 }, 0)).toBeNull();
    o.close();
  });
});
