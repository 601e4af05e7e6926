/**
 * Moderation over real Connections on fake sockets, a fake fan-out, contact store, retention
 * and shredder: who is ended by a kick, an expiry or a shred, who is told to rekey, what is
 * published to the other relays and what is taken from them.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ERROR_CODES, LatchkeyError, type Principal } from '@latchkey/protocol';
import { FakeSocket } from './_fake-socket.ts';
import { Connection } from '../src/connection.ts';
import type { ControlEvent, FanoutEvent, FanoutSubscription } from '../src/fanout.ts';
import { Moderation, type ModerationOptions } from '../src/moderation.ts';
import { ParticipantLimits } from '../src/participant-limits.ts';

const RELAY = 'relay-here';

function principal(contactId: string, participantId: string): Principal {
  return {
    contactId,
    participantId,
    role: 'agent',
    tokenId: `token-${participantId}`,
    expiresAt: Date.now() + 600_000,
  };
}

function setup(over: Partial<ModerationOptions> = {}) {
  const conns = new Set<Connection>();
  const sockets = new Map<Connection, FakeSocket>();
  const limits = new ParticipantLimits({ perSecond: 1000, burst: 1000 });
  const left: Connection[] = [];
  let resyncs = 0;
  const published: FanoutEvent[] = [];
  let publishFails = false;
  let control: ((e: ControlEvent) => void) | undefined;
  let unsubscribed = false;
  const expired: string[] = [];
  const emitted: { type: string; data: unknown }[] = [];
  const due: string[][] = [];
  let dueCalls = 0;
  const metrics = { fanoutPublishFailures: 0 };
  const logs: { event: string }[] = [];

  /** A connection of `p` (unauthenticated when null). */
  function connect(p: Principal | null): Connection {
    const ws = new FakeSocket();
    const c = new Connection(ws, {
      id: conns.size + 1,
      ip: '192.0.2.1',
      maxFrameBytes: 1024,
      maxProtocolErrors: 10,
      authTimeoutMs: 60_000,
      rateLimit: { perSecond: 100, burst: 100 },
      ipFrames: { takeFrame: () => true },
      log: () => undefined,
      onText: () => undefined,
      onRateAbuse: () => undefined,
      onClose: (closed) => conns.delete(closed),
    });
    if (p) c.authenticated(p, limits.acquireBytes(p));
    conns.add(c);
    sockets.set(c, ws);
    return c;
  }

  const moderation = new Moderation({
    connections: conns,
    streams: {
      leave: (c) => left.push(c),
      resync: () => resyncs++,
    },
    fanout: {
      publish: (e) => {
        published.push(e);
        return publishFails ? Promise.reject(new Error('down')) : Promise.resolve();
      },
      subscribeControl: (handler): FanoutSubscription => {
        control = handler;
        return {
          ready: Promise.resolve(),
          unsubscribe: () => {
            unsubscribed = true;
          },
        };
      },
    },
    relayId: RELAY,
    metrics,
    contacts: {
      expireDue: () => {
        dueCalls++;
        return Promise.resolve(due.shift() ?? []);
      },
      setExpiry: (contactId) =>
        contactId === 'gone'
          ? Promise.reject(new LatchkeyError('NOT_FOUND', 'no such contact'))
          : Promise.resolve({} as never),
    },
    retention: {
      contactExpired: (contactId) => {
        expired.push(contactId);
        return contactId === 'bad-retention'
          ? Promise.reject(new Error('disk'))
          : Promise.resolve();
      },
    },
    shredder: { deleteContact: () => Promise.resolve(3) },
    webhooks: { emit: (type, data) => (emitted.push({ type, data }), null) },
    expirySweepMs: 60_000,
    log: (e) => logs.push(e),
    ...over,
  });

  return {
    moderation,
    conns,
    connect,
    socket: (c: Connection) => sockets.get(c) as FakeSocket,
    left,
    published,
    failPublish: () => (publishFails = true),
    control: (e: ControlEvent) => control?.(e),
    unsubscribed: () => unsubscribed,
    resyncs: () => resyncs,
    expired,
    emitted,
    due,
    dueCalls: () => dueCalls,
    metrics,
    logs,
  };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('Moderation', () => {
  it("a kick ends the participant's connections, rekeys the rest of the contact, and tells the other relays", async () => {
    const t = setup();
    const kickedA = t.connect(principal('c1', 'p1'));
    const kickedB = t.connect(principal('c1', 'p1'));
    const stays = t.connect(principal('c1', 'p2'));
    const elsewhere = t.connect(principal('c2', 'p1'));
    const anonymous = t.connect(null);
    expect(t.moderation.kicked('c1', 'p1')).toBe(2);
    for (const c of [kickedA, kickedB]) {
      expect(t.socket(c).frames()).toEqual([
        expect.objectContaining({ code: 'FORBIDDEN', message: 'removed from this contact' }),
      ]);
      expect(t.socket(c).closes[0]?.code).toBe(ERROR_CODES.FORBIDDEN.ws);
      expect(c.ready).toBe(false);
    }
    expect(t.left).toEqual([kickedA, kickedB]);
    expect(t.socket(stays).frames()).toEqual([{ v: 1, type: 'rekey' }]);
    expect(t.socket(elsewhere).sent).toEqual([]);
    expect(t.socket(anonymous).sent).toEqual([]);
    expect(t.published).toEqual([
      expect.objectContaining({
        type: 'disconnect',
        contactId: 'c1',
        participantId: 'p1',
        code: 'FORBIDDEN',
        origin: RELAY,
      }),
      expect.objectContaining({ type: 'rekey', contactId: 'c1', origin: RELAY }),
    ]);
    // repeated before the sockets finished closing: nothing more to end
    expect(t.moderation.disconnect('c1', 'p1', 'FORBIDDEN')).toBe(0);
    expect(t.socket(kickedA).frames()).toHaveLength(1);
    await t.moderation.close();
  });

  it("takes other relays' requests without passing them on, ignores its own, resyncs on notice", async () => {
    const t = setup();
    const a = t.connect(principal('c1', 'p1'));
    const b = t.connect(principal('c1', 'p2'));
    const own = { origin: RELAY, at: Date.now() };
    const other = { origin: 'relay-elsewhere', at: Date.now() };
    t.control({
      type: 'disconnect',
      contactId: 'c1',
      participantId: 'p1',
      code: 'FORBIDDEN',
      ...own,
    });
    t.control({ type: 'rekey', contactId: 'c1', ...own });
    expect(t.socket(a).sent).toEqual([]);
    expect(t.socket(b).sent).toEqual([]);
    t.control({ type: 'rekey', contactId: 'c1', ...other });
    expect(t.socket(a).frames()).toEqual([{ v: 1, type: 'rekey' }]);
    t.control({
      type: 'disconnect',
      contactId: 'c1',
      participantId: null,
      code: 'CONTACT_EXPIRED',
      ...other,
    });
    expect(t.socket(b).errors()).toEqual(['CONTACT_EXPIRED']);
    expect(t.logs).toContainEqual(
      expect.objectContaining({ event: 'remote-disconnect', closed: 2 }),
    );
    expect(t.published).toEqual([]);
    t.control({ type: 'resync' });
    expect(t.resyncs()).toBe(1);
    await t.moderation.close();
  });

  it('a failed publish is counted and logged, and the local connections end all the same', async () => {
    const t = setup();
    const a = t.connect(principal('c1', 'p1'));
    t.failPublish();
    expect(t.moderation.disconnect('c1', null, 'CONTACT_EXPIRED')).toBe(1);
    expect(t.socket(a).errors()).toEqual(['CONTACT_EXPIRED']);
    await vi.waitFor(() => expect(t.metrics.fanoutPublishFailures).toBe(1));
    expect(t.logs).toContainEqual({ event: 'fanout-publish-failed', contactId: 'c1' });
    await t.moderation.close();
  });

  it('the sweep ends expired contacts, emits contact.expired, calls retention; one sweep at a time', async () => {
    const t = setup();
    const a = t.connect(principal('c1', 'p1'));
    const b = t.connect(principal('c2', 'p1'));
    const keep = t.connect(principal('c3', 'p1'));
    t.due.push(['bad-retention', 'c1', 'c2']);
    const first = t.moderation.sweepExpired();
    expect(t.moderation.sweepExpired()).toBe(first);
    await first;
    expect(t.dueCalls()).toBe(1);
    expect(t.socket(a).errors()).toEqual(['CONTACT_EXPIRED']);
    expect(t.socket(b).errors()).toEqual(['CONTACT_EXPIRED']);
    expect(t.socket(keep).sent).toEqual([]);
    expect(t.expired).toEqual(['bad-retention', 'c1', 'c2']);
    expect(t.emitted.map((e) => e.type)).toEqual([
      'contact.expired',
      'contact.expired',
      'contact.expired',
    ]);
    expect(t.logs).toContainEqual(
      expect.objectContaining({ event: 'retention-failed', contactId: 'bad-retention' }),
    );
    await t.moderation.sweepExpired();
    expect(t.dueCalls()).toBe(2);
    await t.moderation.close();
  });

  it('sweeps on its interval until closed', async () => {
    vi.useFakeTimers();
    const t = setup();
    vi.advanceTimersByTime(60_000);
    expect(t.dueCalls()).toBe(1);
    await t.moderation.close();
    expect(t.unsubscribed()).toBe(true);
    vi.advanceTimersByTime(10 * 60_000);
    expect(t.dueCalls()).toBe(1);
  });

  it('a shred expires the contact at once, ends its connections and deletes its ciphertext', async () => {
    const t = setup();
    const a = t.connect(principal('c1', 'p1'));
    expect(await t.moderation.shred('c1')).toBe(3);
    expect(t.socket(a).errors()).toEqual(['CONTACT_EXPIRED']);
    expect(await t.moderation.shred('gone')).toBe(3);
    const none = setup({ shredder: undefined });
    const b = none.connect(principal('c1', 'p1'));
    const err = await none.moderation.shred('c1').catch((e: unknown) => e);
    expect(LatchkeyError.is(err, 'NOT_FOUND')).toBe(true);
    expect(none.socket(b).errors()).toEqual(['CONTACT_EXPIRED']);
    await t.moderation.close();
    await none.moderation.close();
  });
});
