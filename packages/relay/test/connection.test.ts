/**
 * Connection over a fake socket: rate limits (frames, the participant's bytes, the cut-off of
 * sustained abuse), liveness, protocol-error count, slow readers, timers and early frames.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  ERROR_CODES,
  WS_CLOSE_GOING_AWAY,
  WS_CLOSE_POLICY,
  type Principal,
} from '@latchkey/protocol';
import {
  Connection,
  MAX_BUFFERED_BYTES,
  MAX_EARLY_FRAMES,
  MAX_RATE_DROPS,
  type ConnectionOptions,
} from '../src/connection.ts';
import { ParticipantLimits, RATE_ABUSE_COOLDOWN_MS } from '../src/participant-limits.ts';
import { FakeSocket } from './_fake-socket.ts';
import { CLOCK_TOLERANCE_SECONDS, type RelayLogEvent } from '../src/options.ts';

const principal: Principal = {
  contactId: 'c1',
  participantId: 'p1',
  role: 'visitor',
  tokenId: 'token-0001',
  expiresAt: Date.now() + 600_000,
};

function setup(over: Partial<ConnectionOptions> = {}) {
  const ws = new FakeSocket();
  const texts: string[] = [];
  const logs: RelayLogEvent[] = [];
  const abused: Principal[] = [];
  const closed: Connection[] = [];
  let clock = 1_000_000;
  const conn = new Connection(ws, {
    id: 7,
    ip: '192.0.2.1',
    maxFrameBytes: 1024,
    maxProtocolErrors: 10,
    authTimeoutMs: 60_000,
    rateLimit: { perSecond: 1, burst: 3 },
    ipFrames: { takeFrame: () => true },
    log: (e) => logs.push(e),
    onText: (_c, text) => texts.push(text),
    onRateAbuse: (p) => abused.push(p),
    onClose: (c) => closed.push(c),
    now: () => clock,
    ...over,
  });
  return {
    ws,
    conn,
    texts,
    logs,
    abused,
    closed,
    tick: (ms: number) => (clock += ms),
    now: () => clock,
  };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('Connection: rate limits', () => {
  it('passes a burst, refuses the frame beyond it with RATE_LIMITED, and refills with time', () => {
    const t = setup();
    for (let i = 0; i < 5; i++) t.ws.peer(`f${i}`);
    expect(t.texts).toEqual(['f0', 'f1', 'f2']);
    expect(t.ws.errors()).toEqual(['RATE_LIMITED', 'RATE_LIMITED']);
    expect(t.ws.closes).toEqual([]);
    t.tick(1000);
    t.ws.peer('later');
    t.ws.peer('too soon');
    expect(t.texts).toEqual(['f0', 'f1', 'f2', 'later']);
    t.ws.finish(1000);
  });

  it('counts the per-IP budget too', () => {
    let ipFrames = 1;
    const t = setup({ ipFrames: { takeFrame: () => ipFrames-- > 0 } });
    t.ws.peer('a');
    t.ws.peer('b');
    expect(t.texts).toEqual(['a']);
    expect(t.ws.errors()).toEqual(['RATE_LIMITED']);
    t.ws.finish(1000);
  });

  it('cuts off sustained abuse with 1008 and cools its participant down', () => {
    const t = setup({ rateLimit: { perSecond: 1, burst: 1 } });
    t.conn.authenticated(
      principal,
      new ParticipantLimits({ perSecond: 1e6, burst: 1e6 }).acquireBytes(principal),
    );
    t.ws.peer('ok');
    for (let i = 0; i < MAX_RATE_DROPS; i++) t.ws.peer('flood');
    expect(t.ws.errors()).toHaveLength(MAX_RATE_DROPS);
    expect(t.ws.closes).toEqual([]);
    t.ws.peer('one more');
    expect(t.ws.closes).toEqual([{ code: WS_CLOSE_POLICY, reason: 'rate limit abuse' }]);
    expect(t.abused).toEqual([principal]);
    expect(t.ws.errors()).toHaveLength(MAX_RATE_DROPS);
    t.ws.finish(WS_CLOSE_POLICY);
  });

  it('forgets refusals older than its window', () => {
    const t = setup({ rateLimit: { perSecond: 0.001, burst: 1 } });
    t.ws.peer('ok');
    for (let i = 0; i < MAX_RATE_DROPS; i++) t.ws.peer('flood');
    t.tick(10_001);
    for (let i = 0; i < MAX_RATE_DROPS; i++) t.ws.peer('flood again');
    expect(t.ws.closes).toEqual([]);
    t.ws.peer('over');
    expect(t.ws.closes.map((c) => c.code)).toEqual([WS_CLOSE_POLICY]);
    t.ws.finish(WS_CLOSE_POLICY);
  });

  it("shares the participant's byte bucket between its connections; a byte refusal weighs ten", () => {
    const limits = new ParticipantLimits({ perSecond: 1, burst: 100 }, () => 0);
    const a = setup({ rateLimit: { perSecond: 1000, burst: 1000 } });
    const b = setup({ rateLimit: { perSecond: 1000, burst: 1000 } });
    a.conn.authenticated(principal, limits.acquireBytes(principal));
    b.conn.authenticated(principal, limits.acquireBytes(principal));
    a.ws.peer('x'.repeat(60));
    b.ws.peer('y'.repeat(60));
    expect(a.texts).toHaveLength(1);
    expect(b.texts).toHaveLength(0);
    expect(b.ws.errors()).toEqual(['RATE_LIMITED']);
    for (let i = 0; i < MAX_RATE_DROPS / 10 - 1; i++) b.ws.peer('y'.repeat(60));
    expect(b.ws.closes).toEqual([]);
    b.ws.peer('y'.repeat(60));
    expect(b.ws.closes.map((c) => c.reason)).toEqual(['rate limit abuse']);
    a.ws.finish(1000);
    b.ws.finish(1000);
  });
});

describe('Connection: liveness', () => {
  it('pings each heartbeat and terminates a socket that answered none', () => {
    const t = setup();
    t.conn.heartbeat();
    expect(t.ws.pings).toBe(1);
    t.ws.emit('pong');
    t.conn.heartbeat();
    expect(t.ws.pings).toBe(2);
    expect(t.ws.terminated).toBe(false);
    t.conn.heartbeat();
    expect(t.ws.terminated).toBe(true);
    expect(t.logs.map((e) => e.event)).toContain('heartbeat-timeout');
    expect(t.closed).toEqual([t.conn]);
    expect(t.conn.phase).toBe('closed');
  });

  it('counts any frame from the peer as a sign of life', () => {
    const t = setup();
    t.conn.heartbeat();
    t.ws.peer('hello');
    t.conn.heartbeat();
    expect(t.ws.terminated).toBe(false);
    t.ws.finish(1000);
  });

  it('terminates a socket whose ping throws', () => {
    const t = setup();
    t.ws.ping = () => {
      throw new Error('gone');
    };
    t.conn.heartbeat();
    expect(t.ws.terminated).toBe(true);
  });
});

describe('Connection: errors and writes', () => {
  it('closes with 1008 after more than maxProtocolErrors', () => {
    const t = setup({ maxProtocolErrors: 2, rateLimit: { perSecond: 100, burst: 100 } });
    t.ws.peer('bin', true);
    t.ws.peer('bin', true);
    expect(t.ws.errors()).toEqual(['BAD_FRAME', 'BAD_FRAME']);
    expect(t.ws.closes).toEqual([]);
    t.ws.peer('bin', true);
    expect(t.ws.closes).toEqual([{ code: WS_CLOSE_POLICY, reason: 'too many protocol errors' }]);
    t.ws.finish(WS_CLOSE_POLICY);
  });

  it('answers a frame over maxFrameBytes with TOO_LARGE and its close code', () => {
    const t = setup({ maxFrameBytes: 10 });
    t.ws.peer('x'.repeat(11));
    expect(t.texts).toEqual([]);
    expect(t.ws.errors()).toEqual(['TOO_LARGE']);
    expect(t.ws.closes.map((c) => c.code)).toEqual([ERROR_CODES.TOO_LARGE.ws]);
    t.ws.finish(1009);
  });

  it('drops a reader that leaves too much queued instead of queueing more', () => {
    const t = setup();
    t.conn.sendText('one');
    t.ws.bufferedAmount = MAX_BUFFERED_BYTES + 1;
    t.conn.sendText('two');
    expect(t.ws.sent).toEqual(['one']);
    expect(t.ws.closes).toEqual([{ code: ERROR_CODES.UNAVAILABLE.ws, reason: 'UNAVAILABLE' }]);
    t.ws.finish(1013);
    t.conn.sendText('three');
    expect(t.ws.sent).toEqual(['one']);
  });

  it('tells the peer a fixed message for a foreign failure and logs its name only', () => {
    const t = setup({
      onText: () => {
        throw new Error('secret detail from the input');
      },
    });
    t.ws.peer('frame');
    const frames = t.ws.frames();
    expect(frames).toEqual([
      expect.objectContaining({ type: 'error', code: 'INTERNAL', message: 'internal error' }),
    ]);
    expect(JSON.stringify(t.logs)).not.toContain('secret detail');
    expect(t.logs).toContainEqual(expect.objectContaining({ event: 'failure', detail: 'Error' }));
    t.ws.finish(1011);
  });

  it('end() sends the code, closes with its close code and serves nothing more', () => {
    const t = setup();
    t.conn.end('FORBIDDEN', 'removed from this contact');
    expect(t.ws.frames()).toEqual([
      expect.objectContaining({ code: 'FORBIDDEN', message: 'removed from this contact' }),
    ]);
    expect(t.ws.closes[0]?.code).toBe(ERROR_CODES.FORBIDDEN.ws);
    expect(t.conn.ready).toBe(false);
    t.ws.peer('late');
    expect(t.texts).toEqual([]);
    t.ws.finish(ERROR_CODES.FORBIDDEN.ws);
  });
});

describe('Connection: authentication', () => {
  it('times out a connection that does not authenticate in time, not one that did', () => {
    vi.useFakeTimers();
    const slow = setup({ authTimeoutMs: 1000 });
    const quick = setup({ authTimeoutMs: 1000 });
    quick.conn.authenticated(
      principal,
      new ParticipantLimits({ perSecond: 1, burst: 1 }).acquireBytes(principal),
    );
    vi.advanceTimersByTime(999);
    expect(slow.ws.sent).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(slow.ws.errors()).toEqual(['AUTH_TIMEOUT']);
    expect(slow.ws.closes[0]?.code).toBe(ERROR_CODES.AUTH_TIMEOUT.ws);
    expect(quick.ws.sent).toEqual([]);
    slow.ws.finish(4408);
    quick.ws.finish(1000);
  });

  it('ends with AUTH_EXPIRED when the token expires (after the clock tolerance)', () => {
    vi.useFakeTimers();
    const t = setup();
    const p = { ...principal, expiresAt: t.now() + 5_000 };
    t.conn.authenticated(p, new ParticipantLimits({ perSecond: 1, burst: 1 }).acquireBytes(p));
    vi.advanceTimersByTime(5_000 + CLOCK_TOLERANCE_SECONDS * 1000 - 1);
    expect(t.ws.sent).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(t.ws.errors()).toEqual(['AUTH_EXPIRED']);
    t.ws.finish(4401);
  });

  it('holds frames pipelined behind auth, in order, up to a limit', () => {
    const t = setup({ rateLimit: { perSecond: 100, burst: 100 } });
    t.conn.phase = 'authenticating';
    for (let i = 0; i < MAX_EARLY_FRAMES; i++) t.ws.peer(`e${i}`);
    expect(t.texts).toEqual([]);
    expect(t.ws.closes).toEqual([]);
    t.ws.peer('one too many');
    expect(t.ws.errors()).toEqual(['BAD_REQUEST']);
    expect(t.ws.closes.map((c) => c.code)).toEqual([WS_CLOSE_POLICY]);
    const early = t.conn.takeEarly();
    expect(early).toHaveLength(MAX_EARLY_FRAMES);
    expect(early[0]).toBe('e0');
    expect(early[MAX_EARLY_FRAMES - 1]).toBe(`e${MAX_EARLY_FRAMES - 1}`);
    expect(t.conn.takeEarly()).toEqual([]);
    t.ws.finish(WS_CLOSE_POLICY);
  });

  it('on close: clears its timers, releases its byte lease, tells the relay once', () => {
    vi.useFakeTimers();
    const limits = new ParticipantLimits({ perSecond: 1, burst: 10 }, () => 0);
    const t = setup({ authTimeoutMs: 1000 });
    t.conn.authenticated(principal, limits.acquireBytes(principal));
    t.ws.peer('x'.repeat(10));
    t.ws.finish(1000);
    expect(t.closed).toEqual([t.conn]);
    vi.advanceTimersByTime(10 * 60_000);
    expect(t.ws.sent).toEqual([]);
    // With no connection left, the empty bucket is kept (no refill by reconnecting)...
    limits.sweep();
    const again = limits.acquireBytes(principal);
    expect(again.bucket.take(1)).toBe(false);
  });

  it('closeGracefully closes with 1001 and terminates a peer that does not answer', async () => {
    vi.useFakeTimers();
    const answers = setup();
    const silent = setup();
    const a = answers.conn.closeGracefully(2000);
    const s = silent.conn.closeGracefully(2000);
    expect(answers.ws.closes).toEqual([{ code: WS_CLOSE_GOING_AWAY, reason: 'going away' }]);
    answers.ws.finish(WS_CLOSE_GOING_AWAY);
    await a;
    expect(silent.ws.terminated).toBe(false);
    vi.advanceTimersByTime(2000);
    await s;
    expect(silent.ws.terminated).toBe(true);
    expect(answers.ws.terminated).toBe(false);
  });
});

describe('ParticipantLimits', () => {
  it('refuses a participant for the cool-down after abuse, then forgets it', () => {
    let clock = 0;
    const limits = new ParticipantLimits({ perSecond: 1, burst: 1 }, () => clock);
    expect(limits.coolingDown(principal)).toBe(false);
    limits.coolDown(principal);
    expect(limits.coolingDown(principal)).toBe(true);
    expect(limits.coolingDown({ ...principal, participantId: 'p2' })).toBe(false);
    clock += RATE_ABUSE_COOLDOWN_MS;
    expect(limits.coolingDown(principal)).toBe(false);
  });
});
