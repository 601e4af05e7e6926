/**
 * Client outbox (docs/guarantees.md "Client outbox"): messages sealed while the relay is
 * unreachable wait as sealed envelopes in the outbox store; a new client object over the same
 * store (a restarted app, a reloaded page) shows them as `pending`, sends them once, in order,
 * before anything new, and forgets each on its ack. One whose ack was lost is not duplicated.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import {
  LatchkeyClient,
  MemoryOutbox,
  type ChatMessage,
  type ClientOptions,
  type PendingMessage,
  type WebSocketConstructor,
} from '@latchkey/client';
import type { SealedEnvelope } from '@latchkey/protocol';
import { startStack, until, type Stack } from './harness.ts';

let stack: Stack;
beforeEach(async () => {
  stack = await startStack();
});
afterEach(async () => {
  await stack.close();
});

describe('client outbox across client objects', () => {
  it('sends what an earlier session left, once, in order, before new messages; never stores plaintext', async () => {
    const store = new MemoryOutbox();
    const vToken = await stack.token('ob-1', 'visitor-1', 'visitor');
    const reader = await stack.client(await stack.token('ob-1', 'agent-1', 'agent'));
    const seen: ChatMessage[] = [];
    reader.on('message', (m) => seen.push(m));

    const first = await stack.client(vToken, { outbox: store });
    await first.send('before the outage');
    await stack.stopRelay();
    const waiting = [first.send('typed offline 1'), first.send('typed offline 2')];
    for (const p of waiting) p.catch(() => undefined);
    await eventually(
      async () => (await store.load('ob-1', 'visitor-1')).length === 2,
      'two records',
    );
    const records = await store.load('ob-1', 'visitor-1');
    expect(JSON.stringify(records)).not.toContain('typed offline');
    first.close(); // the page goes away

    await stack.startRelay();
    const second = new LatchkeyClient({ ...clientOpts(vToken), outbox: store });
    const pending: PendingMessage[] = [];
    second.on('pending', (p) => pending.push(p));
    await second.connect();
    expect(pending.map((p) => p.text)).toEqual(['typed offline 1', 'typed offline 2']);
    const after = await second.send('after the reload');
    await until(() => seen.length === 4, 10_000, 'the reader to see four messages');
    expect(seen.map((m) => m.text)).toEqual([
      'before the outage',
      'typed offline 1',
      'typed offline 2',
      'after the reload',
    ]);
    expect(seen.map((m) => m.seq)).toEqual([1, 2, 3, 4]);
    expect(after.seq).toBe(4);
    await eventually(
      async () => (await store.load('ob-1', 'visitor-1')).length === 0,
      'acked records to be deleted',
    );
    second.close();
  });

  it('a record whose ack was lost is acknowledged as a duplicate, not stored or shown twice', async () => {
    const puts: SealedEnvelope[] = [];
    class Recording extends MemoryOutbox {
      override put(e: SealedEnvelope): Promise<void> {
        puts.push(e);
        return super.put(e);
      }
    }
    const vToken = await stack.token('ob-2', 'visitor-1', 'visitor');
    const first = await stack.client(vToken, { outbox: new Recording() });
    expect((await first.send('one')).seq).toBe(1);
    first.close();
    // As if the ack had been lost: the record is still there when the page comes back.
    const store = new MemoryOutbox();
    await store.put(puts[0]!);
    const second = new LatchkeyClient({ ...clientOpts(vToken), outbox: store });
    const seen: ChatMessage[] = [];
    second.on('message', (m) => seen.push(m));
    await second.connect();
    await eventually(
      async () => (await store.load('ob-2', 'visitor-1')).length === 0,
      'the record to be acked',
    );
    await new Promise((r) => setTimeout(r, 200));
    expect(seen.map((m) => [m.seq, m.text])).toEqual([[1, 'one']]);
    const audit = await stack.client(await stack.token('ob-2', 'agent-2', 'agent'), {
      live: false,
    });
    expect((await audit.history(0)).map((h) => h.seq)).toEqual([1]);
    second.close();
  });

  it('a send under a caller-chosen msgId keeps that id in the outbox, the ack and the message', async () => {
    const store = new MemoryOutbox();
    const vToken = await stack.token('ob-3', 'visitor-1', 'visitor');
    const client = await stack.client(vToken, { outbox: store });
    const seen: ChatMessage[] = [];
    client.on('message', (m) => seen.push(m));
    await expect(client.send('bad id', { msgId: 'short' })).rejects.toMatchObject({
      code: 'BAD_REQUEST',
    });
    await stack.stopRelay();
    const msgId = 'ui-chosen-id-0000000001';
    const waiting = client.send('chosen', { msgId });
    waiting.catch(() => undefined);
    await eventually(
      async () => (await store.load('ob-3', 'visitor-1')).length === 1,
      'the record',
    );
    expect((await store.load('ob-3', 'visitor-1'))[0]?.msgId).toBe(msgId);
    await expect(client.send('again', { msgId })).rejects.toMatchObject({ code: 'CONFLICT' });
    await stack.startRelay();
    const r = await waiting;
    expect(r).toMatchObject({ msgId, seq: 1, duplicate: false });
    await until(() => seen.length === 1, 10_000, 'the own message');
    expect(seen.map((m) => [m.msgId, m.text])).toEqual([[msgId, 'chosen']]);
    client.close();
  });
});

function clientOpts(token: string): ClientOptions {
  return {
    relayUrl: stack.relayUrl,
    keysUrl: stack.keysUrl,
    token,
    WebSocket: WebSocket as unknown as WebSocketConstructor,
    backoff: { minMs: 50, maxMs: 400 },
  };
}

async function eventually(
  predicate: () => Promise<boolean>,
  what: string,
  ms = 5_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
