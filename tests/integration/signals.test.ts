/**
 * Typing and seen end to end (docs/protocol.md "Signals: typing and seen"): Node clients over a
 * real relay and key service. Typing shows and clears (by a stop, and by expiry), seen receipts
 * arrive and only ever go up, and what a member of the contact or the relay might do with a
 * captured signal (send it as its own, replay it, alter it) is dropped, counted, never shown.
 */
import { WebSocket } from 'ws';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { LatchkeyClient } from '@latchkey/client';
import { ServerFrame, SIGNAL_LIMITS, type SealedSignal } from '@latchkey/protocol';
import { startStack, until, type Stack } from './harness.ts';

let stack: Stack;
beforeEach(async () => {
  stack = await startStack();
});
afterEach(async () => {
  await stack.close();
});

type Typing = { participantId: string; role: string; state: string };
type Seen = { participantId: string; role: string; seq: number };

function events(c: LatchkeyClient): { typing: Typing[]; seen: Seen[] } {
  const out = { typing: [] as Typing[], seen: [] as Seen[] };
  c.on('typing', (e) => out.typing.push(e));
  c.on('seen', (e) => out.seen.push(e));
  return out;
}

/** A raw, joined connection with `token`, recording the signals the relay forwards to it. */
async function raw(token: string): Promise<{ ws: WebSocket; signals: SealedSignal[] }> {
  const ws = new WebSocket(stack.relayUrl);
  const signals: SealedSignal[] = [];
  let joined = false;
  ws.on('message', (data) => {
    const f = ServerFrame.parse(JSON.parse(String(data)));
    if (f.type === 'ready') ws.send(JSON.stringify({ v: 1, type: 'join', since: 0 }));
    if (f.type === 'joined') joined = true;
    if (f.type === 'signal') signals.push(f.signal);
  });
  await new Promise((r) => ws.once('open', r));
  ws.send(JSON.stringify({ v: 1, type: 'auth', token }));
  await until(() => joined, 5000, 'join');
  return { ws, signals };
}

describe('signals between a visitor and an agent', () => {
  it('typing shows and clears on the other side, both ways', async () => {
    const visitor = await stack.client(await stack.token('c-sig', 'v1', 'visitor'));
    const agent = await stack.client(await stack.token('c-sig', 'a1', 'agent'));
    const atAgent = events(agent);
    const atVisitor = events(visitor);
    visitor.typing('start');
    await until(() => atAgent.typing.length === 1, 5000, 'typing start');
    expect(atAgent.typing[0]).toEqual({ participantId: 'v1', role: 'visitor', state: 'start' });
    visitor.typing('start'); // throttled: no second start
    visitor.typing('stop');
    await until(() => atAgent.typing.length === 2, 5000, 'typing stop');
    expect(atAgent.typing[1]).toEqual({ participantId: 'v1', role: 'visitor', state: 'stop' });
    agent.typing('start');
    await until(() => atVisitor.typing.length === 1, 5000, 'agent typing');
    expect(atVisitor.typing[0]).toMatchObject({ participantId: 'a1', role: 'agent' });
    // no stop from the agent's application: its client stops after 5 s idle (else 6 s expiry here)
    await until(() => atVisitor.typing.length === 2, SIGNAL_LIMITS.typingExpiryMs + 3000, 'expiry');
    expect(atVisitor.typing[1]).toMatchObject({ participantId: 'a1', state: 'stop' });
    expect(atAgent.typing.some((e) => e.participantId === 'a1')).toBe(false);
  }, 20_000);

  it('seen receipts arrive, name the reader, and only go up', async () => {
    const visitor = await stack.client(await stack.token('c-seen', 'v1', 'visitor'));
    const agent = await stack.client(await stack.token('c-seen', 'a1', 'agent'));
    const atVisitor = events(visitor);
    await visitor.send('one');
    const { seq } = await visitor.send('two');
    agent.markSeen(seq);
    await until(() => atVisitor.seen.length === 1, 5000, 'seen');
    expect(atVisitor.seen[0]).toEqual({ participantId: 'a1', role: 'agent', seq });
    agent.markSeen(seq - 1); // lower: ignored
    const r3 = await visitor.send('three');
    agent.markSeen(r3.seq);
    await until(() => atVisitor.seen.length === 2, 5000, 'second seen');
    expect(atVisitor.seen.map((s) => s.seq)).toEqual([seq, r3.seq]);
    // delivered receipts are their own kind: they never count as seen
    const delivered: { participantId: string; seq: number }[] = [];
    visitor.on('delivered', (e) => delivered.push(e));
    agent.markDelivered(r3.seq);
    await until(() => delivered.length === 1, 5000, 'delivered');
    expect(delivered[0]).toMatchObject({ participantId: 'a1', seq: r3.seq });
    expect(atVisitor.seen).toHaveLength(2);
  });

  it('drops a signal sent longer ago than 30 s (its sender clock behind)', async () => {
    const agent = await stack.client(await stack.token('c-old', 'a1', 'agent'));
    const atAgent = events(agent);
    const late = await stack.client(await stack.token('c-old', 'v1', 'visitor'), {
      now: () => Date.now() - SIGNAL_LIMITS.maxAgeMs - 5_000,
    });
    late.typing('start');
    await until(() => agent.signalsDropped === 1, 5000, 'old signal dropped');
    const fresh = await stack.client(await stack.token('c-old', 'v2', 'visitor'));
    fresh.typing('start');
    await until(() => atAgent.typing.length === 1, 5000, 'fresh signal');
    expect(atAgent.typing[0]?.participantId).toBe('v2');
    expect(agent.signalsDropped).toBe(1);
  });

  it('drops a captured signal sent by another member, replayed, or altered', async () => {
    const visitor = await stack.client(await stack.token('c-evil', 'v1', 'visitor'));
    const agent = await stack.client(await stack.token('c-evil', 'a1', 'agent'));
    const atVisitor = events(visitor);
    const spy = await raw(await stack.token('c-evil', 'v2', 'visitor'));
    const { seq } = await visitor.send('hello');
    agent.markSeen(seq);
    await until(() => atVisitor.seen.length === 1 && spy.signals.length === 1, 5000, 'seen');
    const captured = spy.signals[0] as SealedSignal;
    // another member sends the agent's receipt as its own: the relay names it, the cert does not
    spy.ws.send(JSON.stringify({ v: 1, type: 'signal', signal: captured }));
    await until(() => visitor.signalsDropped === 1, 5000, 'dropped as another sender');
    // the agent's own token on a second connection replays it: same nonce, dropped
    const again = await raw(await stack.token('c-evil', 'a1', 'agent'));
    again.ws.send(JSON.stringify({ v: 1, type: 'signal', signal: captured }));
    await until(() => visitor.signalsDropped === 2, 5000, 'dropped as a replay');
    // altered ciphertext under the agent's name
    const c = captured.ciphertext;
    const flipped = (c[0] === 'A' ? 'B' : 'A') + c.slice(1);
    again.ws.send(
      JSON.stringify({ v: 1, type: 'signal', signal: { ...captured, ciphertext: flipped } }),
    );
    await until(() => visitor.signalsDropped === 3, 5000, 'dropped as altered');
    // another epoch named
    again.ws.send(
      JSON.stringify({ v: 1, type: 'signal', signal: { ...captured, epoch: captured.epoch + 1 } }),
    );
    await until(() => visitor.signalsDropped === 4, 5000, 'dropped for its epoch');
    expect(atVisitor.seen).toHaveLength(1);
    expect(atVisitor.typing).toHaveLength(0);
    spy.ws.close();
    again.ws.close();
  });
});
