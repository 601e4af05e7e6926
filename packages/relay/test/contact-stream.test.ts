/**
 * ContactStreams over a fake store (an in-memory log whose reads can be held or failed) and a
 * fake fan-out (events injected in any order, or lost): replay from a seq, live delivery in seq
 * order, buffering during a replay, gap repair, own sends, resync and subscription lifetime.
 */
import { describe, expect, it } from 'vitest';
import { LIMITS, LatchkeyError, type ServerFrame, type StoredEnvelope } from '@latchkey/protocol';
import { fakeEnvelope } from './_helpers.ts';
import { ContactStreams, type StreamPeer } from '../src/contact-stream.ts';
import type { EnvelopeEvent, FanoutSubscription } from '../src/fanout.ts';
import type { HistoryPage } from '../src/message-store.ts';
import { RelayMetrics } from '../src/metrics.ts';

const RELAY = 'relay-here';

/** The log of each contact, seq = index + 1. Reads can be held (to race them) or failed. */
class FakeStore {
  readonly logs = new Map<string, StoredEnvelope[]>();
  reads = 0;
  #held: (() => void)[] | undefined;
  #stale: Map<string, StoredEnvelope[]> | undefined;
  failNext: Error | undefined;

  append(contactId: string): StoredEnvelope {
    let log = this.logs.get(contactId);
    if (!log) this.logs.set(contactId, (log = []));
    const e: StoredEnvelope = { ...fakeEnvelope(contactId, 'sender'), seq: log.length + 1 };
    log.push(e);
    return e;
  }

  /**
   * Reads wait until release(); they then see the log as it is at release, or with `stale` as
   * it was at hold() (a read whose snapshot was taken before later commits).
   */
  hold(stale = false): void {
    this.#held ??= [];
    this.#stale = stale ? new Map([...this.logs].map(([c, log]) => [c, [...log]])) : undefined;
  }
  release(): void {
    const held = this.#held ?? [];
    this.#held = undefined;
    for (const go of held) go();
  }

  async history(contactId: string, since: number, limit: number): Promise<HistoryPage> {
    this.reads++;
    if (this.#held) await new Promise<void>((resolve) => this.#held?.push(resolve));
    if (this.failNext) {
      const err = this.failNext;
      this.failNext = undefined;
      throw err;
    }
    const log = (this.#stale ?? this.logs).get(contactId) ?? [];
    this.#stale = undefined;
    const after = log.filter((e) => e.seq > since);
    return { envelopes: after.slice(0, limit), head: log.length, more: after.length > limit };
  }
}

/** Subscriptions per contact; events go only where the test injects them. */
class FakeFanout {
  readonly handlers = new Map<string, (e: EnvelopeEvent) => void>();
  subscribed = 0;
  unsubscribed = 0;
  ready: Promise<void> = Promise.resolve();

  subscribe(contactId: string, handler: (e: EnvelopeEvent) => void): FanoutSubscription {
    this.subscribed++;
    this.handlers.set(contactId, handler);
    return {
      ready: this.ready,
      unsubscribe: () => {
        this.unsubscribed++;
        this.handlers.delete(contactId);
      },
    };
  }

  /** Delivers an event as the fan-out would (from another relay unless said otherwise). */
  emit(envelope: StoredEnvelope, origin = 'relay-elsewhere', conn = 0): void {
    this.handlers.get(envelope.contactId)?.({
      type: 'envelope',
      envelope,
      origin,
      conn,
      at: Date.now(),
    });
  }
}

class FakePeer implements StreamPeer {
  ready = true;
  readonly frames: ServerFrame[] = [];
  #waiters: (() => void)[] = [];
  constructor(readonly id: number) {}

  sendText(text: string): void {
    this.frames.push(JSON.parse(text) as ServerFrame);
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Seqs delivered, in the order they were sent. */
  seqs(): number[] {
    return this.frames.flatMap((f) => (f.type === 'deliver' ? [f.envelope.seq] : []));
  }

  /** Resolves once `test` holds of the frames received. */
  async until(test: (p: FakePeer) => boolean): Promise<void> {
    while (!test(this)) await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }

  joined(): boolean {
    return this.frames.some((f) => f.type === 'joined');
  }
}

function setup() {
  const store = new FakeStore();
  const fanout = new FakeFanout();
  const metrics = new RelayMetrics();
  const failed: { peer: StreamPeer; err: unknown }[] = [];
  const streams = new ContactStreams({
    store,
    fanout,
    relayId: RELAY,
    metrics,
    onRepairFailed: (peer, err) => failed.push({ peer, err }),
  });
  return { store, fanout, metrics, failed, streams };
}

const range = (from: number, to: number): number[] =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('ContactStreams: join', () => {
  it('replays exactly what follows `since`, then sends joined with the head, then goes live', async () => {
    const { store, fanout, streams } = setup();
    for (let i = 0; i < 5; i++) store.append('c1');
    const peer = new FakePeer(1);
    await streams.join(peer, 'c1', 2);
    expect(peer.seqs()).toEqual([3, 4, 5]);
    expect(peer.frames.at(-1)).toEqual({ v: 1, type: 'joined', head: 5 });
    fanout.emit(store.append('c1'));
    expect(peer.seqs()).toEqual([3, 4, 5, 6]);
    expect(peer.frames.at(-1)?.type).toBe('deliver');
  });

  it('replays a log longer than one page, in order', async () => {
    const { store, streams } = setup();
    const n = LIMITS.maxHistoryPage * 2 + 7;
    for (let i = 0; i < n; i++) store.append('c1');
    const peer = new FakePeer(1);
    await streams.join(peer, 'c1', 0);
    expect(peer.seqs()).toEqual(range(1, n));
    expect(store.reads).toBe(3);
  });

  it('clamps a cursor past the head, so the next messages are not hidden', async () => {
    const { store, fanout, streams } = setup();
    for (let i = 0; i < 3; i++) store.append('c1');
    const peer = new FakePeer(1);
    await streams.join(peer, 'c1', 50);
    expect(peer.seqs()).toEqual([]);
    expect(peer.frames).toEqual([{ v: 1, type: 'joined', head: 3 }]);
    fanout.emit(store.append('c1'));
    expect(peer.seqs()).toEqual([4]);
  });

  it('buffers envelopes that go live during a slow replay: each seq once, in order', async () => {
    const { store, fanout, streams } = setup();
    for (let i = 0; i < 3; i++) store.append('c1');
    store.hold();
    const peer = new FakePeer(1);
    const joining = streams.join(peer, 'c1', 0);
    await Promise.resolve();
    // 4 and 5 are committed and published while the replay read waits; 5 arrives first.
    const e4 = store.append('c1');
    const e5 = store.append('c1');
    fanout.emit(e5);
    fanout.emit(e4);
    expect(peer.frames).toEqual([]);
    store.release();
    await joining;
    expect(peer.seqs()).toEqual([1, 2, 3, 4, 5]);
    expect(peer.frames.at(-1)).toEqual({ v: 1, type: 'joined', head: 5 });
    fanout.emit(e5); // a duplicate from the fan-out is dropped
    expect(peer.seqs()).toEqual([1, 2, 3, 4, 5]);
  });

  it('reads the store again when a buffered envelope lies beyond what the replay saw', async () => {
    const { store, fanout, metrics, streams } = setup();
    store.append('c1');
    store.hold(true); // the replay's read sees the log up to 1
    const peer = new FakePeer(1);
    const joining = streams.join(peer, 'c1', 0);
    await Promise.resolve();
    store.append('c1'); // 2: committed, its event still in flight
    fanout.emit(store.append('c1')); // 3
    store.release();
    await joining;
    expect(peer.seqs()).toEqual([1, 2, 3]);
    expect(metrics.gapRepairs).toBe(1);
  });

  it('drains envelopes buffered out of order in seq order, without another read', async () => {
    const { store, fanout, metrics, streams } = setup();
    store.append('c1');
    store.hold(true);
    const peer = new FakePeer(1);
    const joining = streams.join(peer, 'c1', 0);
    await Promise.resolve();
    const e2 = store.append('c1');
    const e3 = store.append('c1');
    fanout.emit(e3);
    fanout.emit(e2);
    store.release();
    await joining;
    expect(peer.seqs()).toEqual([1, 2, 3]);
    expect(peer.frames.at(-1)).toEqual({ v: 1, type: 'joined', head: 3 });
    expect(store.reads).toBe(1);
    expect(metrics.gapRepairs).toBe(0);
  });

  it('answers a fan-out that cannot subscribe with UNAVAILABLE and lets the peer join again', async () => {
    const { store, fanout, streams } = setup();
    store.append('c1');
    fanout.ready = Promise.reject(new Error('redis down'));
    const peer = new FakePeer(1);
    const err = await streams.join(peer, 'c1', 0).catch((e: unknown) => e);
    expect(LatchkeyError.is(err, 'UNAVAILABLE')).toBe(true);
    expect(streams.has(peer)).toBe(false);
    expect(fanout.unsubscribed).toBe(1);
    expect(peer.frames).toEqual([]);
    fanout.ready = Promise.resolve();
    await streams.join(peer, 'c1', 0);
    expect(peer.seqs()).toEqual([1]);
  });

  it('stops a replay for a peer that closed meanwhile: no joined, nothing delivered', async () => {
    const { store, streams } = setup();
    store.append('c1');
    store.hold();
    const peer = new FakePeer(1);
    const joining = streams.join(peer, 'c1', 0);
    await Promise.resolve();
    peer.ready = false;
    store.release();
    await joining;
    expect(peer.frames).toEqual([]);
  });
});

describe('ContactStreams: live order and gap repair', () => {
  async function joinedPeers(n: number) {
    const t = setup();
    const peers = range(1, n).map((id) => new FakePeer(id));
    for (const p of peers) await t.streams.join(p, 'c1', 0);
    return { ...t, peers };
  }

  it('repairs a reordering from the store: 3 before 2 still reaches the peer as 1, 2, 3', async () => {
    const { store, fanout, metrics, peers } = await joinedPeers(1);
    const [peer] = peers as [FakePeer];
    const [e1, e2, e3] = [store.append('c1'), store.append('c1'), store.append('c1')];
    fanout.emit(e1);
    fanout.emit(e3);
    await peer.until((p) => p.seqs().length === 3);
    fanout.emit(e2); // the late one is not delivered twice
    fanout.emit(store.append('c1'));
    expect(peer.seqs()).toEqual([1, 2, 3, 4]);
    expect(metrics.gapRepairs).toBe(1);
  });

  it('repairs a lost event from the store', async () => {
    const { store, fanout, peers } = await joinedPeers(2);
    const [e1] = [store.append('c1'), store.append('c1')];
    const e3 = store.append('c1');
    fanout.emit(e1);
    fanout.emit(e3); // 2 never arrives
    for (const p of peers) await p.until((q) => q.seqs().length === 3);
    for (const p of peers) expect(p.seqs()).toEqual([1, 2, 3]);
  });

  it('buffers live envelopes during a repair and drains them in order afterwards', async () => {
    const { store, fanout, peers } = await joinedPeers(1);
    const [peer] = peers as [FakePeer];
    const es = range(1, 6).map(() => store.append('c1'));
    store.hold();
    fanout.emit(es[2] as StoredEnvelope); // 3: gap, repair read held
    fanout.emit(es[5] as StoredEnvelope);
    fanout.emit(es[4] as StoredEnvelope);
    expect(peer.seqs()).toEqual([]);
    store.release();
    await peer.until((p) => p.seqs().length === 6);
    expect(peer.seqs()).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it("never delivers a connection's own sends back to it, and skips over them without a repair", async () => {
    const { store, fanout, metrics, streams, peers } = await joinedPeers(2);
    const [sender, other] = peers as [FakePeer, FakePeer];
    const e1 = store.append('c1');
    const e2 = store.append('c1'); // sender's own
    const e3 = store.append('c1');
    streams.sent(sender, 2);
    fanout.emit(e1);
    fanout.emit(e2, RELAY, sender.id);
    fanout.emit(e3);
    expect(sender.seqs()).toEqual([1, 3]);
    expect(other.seqs()).toEqual([1, 2, 3]);
    expect(metrics.gapRepairs).toBe(0);
  });

  it('buffers a late envelope that arrives while a repair reads the store: no duplicate', async () => {
    const { store, fanout, peers } = await joinedPeers(1);
    const [peer] = peers as [FakePeer];
    const [e1, e2, e3] = [store.append('c1'), store.append('c1'), store.append('c1')];
    fanout.emit(e1);
    store.hold();
    fanout.emit(e3); // a gap: the repair's read waits
    fanout.emit(e2); // the missing one turns up meanwhile
    expect(peer.seqs()).toEqual([1]);
    store.release();
    await peer.until((p) => p.seqs().length >= 3);
    fanout.emit(store.append('c1'));
    expect(peer.seqs()).toEqual([1, 2, 3, 4]);
  });

  it("a repair skips the connection's own sends as well", async () => {
    const { store, fanout, streams, peers } = await joinedPeers(1);
    const [sender] = peers as [FakePeer];
    store.append('c1'); // 1: its event is lost
    store.append('c1'); // 2: the sender's own, acked
    streams.sent(sender, 2);
    fanout.emit(store.append('c1')); // 3: a gap, repaired from the store
    await sender.until((p) => p.seqs().length === 2);
    fanout.emit(store.append('c1'));
    expect(sender.seqs()).toEqual([1, 3, 4]);
  });

  it('closes nothing itself but reports a failed repair', async () => {
    const { store, fanout, failed, peers } = await joinedPeers(1);
    const [peer] = peers as [FakePeer];
    store.append('c1');
    const e2 = store.append('c1');
    store.failNext = new LatchkeyError('UNAVAILABLE', 'store down');
    fanout.emit(e2);
    while (failed.length === 0) await new Promise<void>((resolve) => setImmediate(resolve));
    expect(failed[0]?.peer).toBe(peer);
    expect(LatchkeyError.is(failed[0]?.err, 'UNAVAILABLE')).toBe(true);
    expect(peer.seqs()).toEqual([]);
  });

  it('resync: every member catches up from the store after the fan-out lost events', async () => {
    const { store, streams, peers } = await joinedPeers(2);
    for (let i = 0; i < 4; i++) store.append('c1');
    streams.resync();
    for (const p of peers) await p.until((q) => q.seqs().length === 4);
    for (const p of peers) expect(p.seqs()).toEqual([1, 2, 3, 4]);
  });

  it('keeps contacts apart and one fan-out subscription per contact while it has members', async () => {
    const { store, fanout, streams } = setup();
    const a = new FakePeer(1);
    const b = new FakePeer(2);
    const c = new FakePeer(3);
    await streams.join(a, 'c1', 0);
    await streams.join(b, 'c1', 0);
    await streams.join(c, 'c2', 0);
    expect(fanout.subscribed).toBe(2);
    fanout.emit(store.append('c2'));
    expect(a.seqs()).toEqual([]);
    expect(c.seqs()).toEqual([1]);
    streams.leave(a);
    expect(fanout.unsubscribed).toBe(0);
    fanout.emit(store.append('c1'));
    expect(a.seqs()).toEqual([]);
    expect(b.seqs()).toEqual([1]);
    streams.leave(b);
    expect(fanout.unsubscribed).toBe(1);
    expect(fanout.handlers.has('c1')).toBe(false);
  });
});
