/**
 * Signal schemas (signals.ts): the largest frame the schema lets through stays within the relay's
 * 2 KiB signal limit, the largest body within the 128-byte plaintext limit; anything outside the
 * bounds, of an unknown kind or with extra fields is refused.
 */
import { describe, expect, it } from 'vitest';
import { ClientFrame, ServerFrame } from '../src/frames.ts';
import { SIGNAL_LIMITS, SealedSignal, SignalBody } from '../src/signals.ts';

const chars = (n: number): string => 'A'.repeat(n);
const largest: SealedSignal = {
  epoch: 2 ** 31 - 1,
  nonce: chars(16),
  ciphertext: chars(192),
  sig: chars(86),
  cert: { body: chars(1024), sig: chars(86) },
};

describe('signal schemas', () => {
  it('keep the largest valid client frame within maxFrameBytes', () => {
    const frame = { v: 1, type: 'signal', id: chars(32), signal: largest };
    expect(ClientFrame.safeParse(frame).success).toBe(true);
    expect(JSON.stringify(frame).length).toBeLessThanOrEqual(SIGNAL_LIMITS.maxFrameBytes);
    const out = { v: 1, type: 'signal', from: chars(64), signal: largest };
    expect(ServerFrame.safeParse(out).success).toBe(true);
  });

  it('keep the largest valid body within maxPlaintextBytes', () => {
    const bodies = [
      { kind: 'typing', state: 'start', sentAt: 8.64e15 },
      { kind: 'seen', seq: Number.MAX_SAFE_INTEGER, sentAt: 8.64e15 },
      { kind: 'delivered', seq: Number.MAX_SAFE_INTEGER, sentAt: 8.64e15 },
    ];
    for (const b of bodies) {
      expect(SignalBody.safeParse(b).success).toBe(true);
      expect(JSON.stringify(b).length).toBeLessThanOrEqual(SIGNAL_LIMITS.maxPlaintextBytes);
    }
    // 128 bytes of plaintext + 16 tag bytes, as base64url
    expect(Math.ceil(((SIGNAL_LIMITS.maxPlaintextBytes + 16) * 4) / 3)).toBe(192);
  });

  it('refuse what is out of bounds, unknown or extra', () => {
    const bad: unknown[] = [
      { ...largest, ciphertext: chars(196) },
      { ...largest, cert: { body: chars(1028), sig: chars(86) } },
      { ...largest, nonce: chars(20) },
      { ...largest, extra: 1 },
      { ...largest, epoch: -1 },
    ];
    for (const s of bad) expect(SealedSignal.safeParse(s).success).toBe(false);
    expect(SignalBody.safeParse({ kind: 'read', seq: 1, sentAt: 1 }).success).toBe(false);
    expect(SignalBody.safeParse({ kind: 'seen', seq: -1, sentAt: 1 }).success).toBe(false);
    expect(SignalBody.safeParse({ kind: 'typing', state: 'maybe', sentAt: 1 }).success).toBe(false);
    expect(SignalBody.safeParse({ kind: 'seen', seq: 1, sentAt: 1, x: 1 }).success).toBe(false);
    // a relay frame without `from`, a client frame with one
    expect(ServerFrame.safeParse({ v: 1, type: 'signal', signal: largest }).success).toBe(false);
    expect(
      ClientFrame.safeParse({ v: 1, type: 'signal', from: 'x', signal: largest }).success,
    ).toBe(false);
  });
});
