import { describe, expect, it } from 'vitest';
import { utf8Encode } from '@latchkey/crypto/codec';
import { ZERO_HASH, chainStep } from '@latchkey/crypto/transcript';
import type { StatementView } from '../src/key-ring.ts';
import { TranscriptVerifier, type LaterEnvelope, type TranscriptInput } from '../src/transcript.ts';

const T0 = 1_800_000_000_000;

/** A fake sender session producing what a client would seal, in order. */
class Sender {
  ctr = 0;
  chain = ZERO_HASH;
  constructor(
    readonly id: string,
    readonly session: string,
    readonly epoch = 0,
  ) {}
  next(
    text: string,
    over: Partial<TranscriptInput> & { seq: number; sentAt?: number },
    seen = { seq: 0, hash: ZERO_HASH },
  ): TranscriptInput {
    this.ctr += 1;
    const plaintext = utf8Encode(text);
    const msgId = `${this.id}-${this.session}-${this.ctr}-msgid-xxxx`;
    const input: TranscriptInput = {
      senderId: this.id,
      msgId,
      epoch: this.epoch,
      sentAt: T0 + this.ctr * 1000,
      ctr: this.ctr,
      prev: this.chain,
      seenSeq: seen.seq,
      seenHash: seen.hash,
      sig: new Uint8Array(64).fill(over.seq),
      live: false,
      opened: { plaintext, sessionKey: this.session, certNotAfter: T0 + 86_400_000 },
      ...over,
    };
    this.chain = chainStep(this.chain, this.ctr, msgId, plaintext);
    return input;
  }
}

const noStatement = { statement: null, now: T0 + 60_000 };
const codes = (
  v: TranscriptVerifier,
  inputs: TranscriptInput[],
  ctx: { statement: StatementView | null; now: number } = noStatement,
) =>
  inputs.map((i, n) => {
    const later: LaterEnvelope[] = inputs.slice(n + 1).map((l) => ({
      seq: l.seq,
      senderId: l.senderId,
      sessionKey: l.opened?.sessionKey,
      ctr: l.ctr,
    }));
    return v.next(i, { ...ctx, later })?.code ?? 'ok';
  });

describe('TranscriptVerifier', () => {
  it('accepts an honest conversation of two senders who saw each other', () => {
    const a = new Sender('a', 'sa');
    const b = new Sender('b', 'sb');
    const v = new TranscriptVerifier();
    const witness = new TranscriptVerifier(); // what b computed as it read
    const m1 = a.next('hi', { seq: 1 });
    witness.next(m1, noStatement);
    const m2 = b.next('hello', { seq: 2 }, { seq: 1, hash: witness.seen().seenHash });
    witness.next(m2, noStatement);
    const m3 = a.next('refund please', { seq: 3 }, { seq: 2, hash: witness.seen().seenHash });
    expect(codes(v, [m1, m2, m3])).toEqual(['ok', 'ok', 'ok']);
    witness.next(m3, noStatement);
    expect(v.seen()).toEqual(witness.seen());
    expect(v.seen().seenSeq).toBe(3);
  });

  it('REPLAYED: the same sender and message id again', () => {
    const a = new Sender('a', 'sa');
    const m1 = a.next('x', { seq: 1 });
    expect(
      codes(new TranscriptVerifier(), [m1, { ...m1, seq: 2, sig: new Uint8Array(64).fill(2) }]),
    ).toEqual(['ok', 'REPLAYED']);
  });

  it('REORDERED: a session counter that goes back, or one placed before those it follows', () => {
    const a = new Sender('a', 'sa');
    const m1 = a.next('please refund', { seq: 1 });
    const m2 = a.next('do not refund', { seq: 2 });
    expect(
      codes(new TranscriptVerifier(), [
        { ...m2, seq: 1 },
        { ...m1, seq: 2 },
      ]),
    ).toEqual(['REORDERED', 'REORDERED']);
  });

  it('MISSING with the count: a gap in a session chain, or a sender that had seen more than precedes it', () => {
    const a = new Sender('a', 'sa');
    const m1 = a.next('1', { seq: 1 });
    a.next('2', { seq: 2 });
    a.next('3', { seq: 3 });
    const m4 = a.next('4', { seq: 4 });
    const v = new TranscriptVerifier();
    expect(v.next(m1, noStatement)).toBeNull();
    expect(v.next({ ...m4, seq: 2 }, noStatement)).toEqual({ code: 'MISSING', missing: 2 });
    const b = new Sender('b', 'sb');
    const cut = b.next('after the cut', { seq: 3 }, { seq: 5, hash: new Uint8Array(32).fill(1) });
    expect(v.next(cut, noStatement)).toEqual({ code: 'MISSING', missing: 3 });
  });

  it('FORKED: a seen hash that differs from this transcript, a broken chain, two messages at one place', () => {
    const a = new Sender('a', 'sa');
    const b = new Sender('b', 'sb');
    const m1 = a.next('1', { seq: 1 });
    const forged = b.next('2', { seq: 2 }, { seq: 1, hash: new Uint8Array(32).fill(9) });
    expect(codes(new TranscriptVerifier(), [m1, forged])).toEqual(['ok', 'FORKED']);
    const m2 = a.next('2', { seq: 2 });
    expect(codes(new TranscriptVerifier(), [m1, { ...m2, prev: new Uint8Array(32) }])).toEqual([
      'ok',
      'FORKED',
    ]);
    const other = { ...m1, seq: 2, msgId: 'a-1-other-msgid-xxxx', sig: new Uint8Array(64).fill(7) };
    expect(codes(new TranscriptVerifier(), [m1, other])).toEqual(['ok', 'FORKED']);
  });

  it('SENDER_REMOVED: signed after the removal, live long after it, or stored after later messages', () => {
    const removedAt = T0 + 5_000;
    const statement: StatementView = {
      epoch: 1,
      removedAt: (p) => (p === 'gone' ? removedAt : undefined),
      supersededAt: () => removedAt,
    };
    const gone = new Sender('gone', 'sg');
    const late = gone.next('x', { seq: 1, sentAt: removedAt + 1 });
    expect(new TranscriptVerifier().next(late, { statement, now: removedAt + 2 })).toEqual({
      code: 'SENDER_REMOVED',
    });
    const backdated = new Sender('gone', 'sg2').next('y', {
      seq: 1,
      sentAt: removedAt - 1000,
      live: true,
    });
    expect(
      new TranscriptVerifier().next(backdated, { statement, now: removedAt + 120_000 })?.code,
    ).toBe('SENDER_REMOVED');
    // Before its removal, read later from history: a genuine message of a then member.
    const early = new Sender('gone', 'sg3').next('z', { seq: 1, sentAt: removedAt - 1000 });
    expect(
      new TranscriptVerifier().next(early, { statement, now: removedAt + 120_000 }),
    ).toBeNull();
  });

  it('STALE_EPOCH: sealed under an epoch superseded for longer than the grace, or after seeing a newer one', () => {
    const since1 = T0 + 10_000;
    const statement: StatementView = {
      epoch: 1,
      removedAt: () => undefined,
      supersededAt: (e) => (e === 0 ? since1 : undefined),
    };
    const old = new Sender('a', 'sa', 0).next('x', { seq: 1, sentAt: since1 + 41_000 });
    expect(new TranscriptVerifier().next(old, { statement, now: since1 + 42_000 })).toEqual({
      code: 'STALE_EPOCH',
    });
    const inGrace = new Sender('a', 'sb', 0).next('x', { seq: 1, sentAt: since1 + 5_000 });
    expect(new TranscriptVerifier().next(inGrace, { statement, now: since1 + 6_000 })).toBeNull();
    const v = new TranscriptVerifier();
    const b = new Sender('b', 'sc', 1);
    const newer = b.next('new epoch', { seq: 1, sentAt: since1 + 1000 });
    expect(v.next(newer, { statement, now: since1 + 2000 })).toBeNull();
    const sawNewer = new Sender('a', 'sd', 0).next(
      'old key',
      { seq: 2, sentAt: since1 + 2000 },
      { seq: 1, hash: v.seen().seenHash },
    );
    expect(v.next(sawNewer, { statement, now: since1 + 3000 })).toEqual({ code: 'STALE_EPOCH' });
  });

  it('CLOCK: sentAt going back in a session, in the receiver future, or a live message under an expired certificate', () => {
    const a = new Sender('a', 'sa');
    const m1 = a.next('1', { seq: 1 });
    const m2 = a.next('2', { seq: 2, sentAt: m1.sentAt - 1 });
    expect(codes(new TranscriptVerifier(), [m1, m2])).toEqual(['ok', 'CLOCK']);
    const future = new Sender('b', 'sb').next('f', { seq: 1, sentAt: T0 + 31_000 });
    expect(new TranscriptVerifier().next(future, { statement: null, now: T0 })).toEqual({
      code: 'CLOCK',
    });
    const expired = new Sender('c', 'sc').next('e', { seq: 1, sentAt: T0, live: true });
    expired.opened = { ...expired.opened!, certNotAfter: T0 + 1000 };
    expect(new TranscriptVerifier().next(expired, { statement: null, now: T0 + 31_001 })).toEqual({
      code: 'CLOCK',
    });
  });

  it('CLOCK: a sender whose sentAt goes back across its sessions by more than the clock skew', () => {
    const first = new Sender('a', 'sa').next('1', { seq: 1, sentAt: T0 + 50_000 });
    const slightly = new Sender('a', 'sb').next('2', { seq: 2, sentAt: T0 + 49_000 }); // another tab
    const far = new Sender('a', 'sc').next('3', { seq: 3, sentAt: T0 + 10_000 });
    expect(
      codes(new TranscriptVerifier(), [first, slightly, far], {
        statement: null,
        now: T0 + 60_000,
      }),
    ).toEqual(['ok', 'ok', 'CLOCK']);
  });

  it('after a hole in the numbering (skipTo) it goes on, and vouches for nothing it cannot compute', () => {
    const a = new Sender('a', 'sa');
    const v = new TranscriptVerifier();
    v.next(a.next('1', { seq: 1 }), noStatement);
    v.skipTo(4);
    expect(v.seq).toBe(3);
    expect(v.seen()).toEqual({ seenSeq: 0, seenHash: ZERO_HASH });
    const b = new Sender('b', 'sb');
    expect(
      v.next(b.next('x', { seq: 4 }, { seq: 2, hash: new Uint8Array(32).fill(5) }), noStatement),
    ).toBeNull();
  });

  it('missingAhead: true while what is missing before it is not among the later ones known', () => {
    const a = new Sender('a', 'sa');
    const m1 = a.next('1', { seq: 1 });
    const m2 = a.next('2', { seq: 2 });
    const v = new TranscriptVerifier();
    const swapped = { ...m2, seq: 1 };
    expect(v.missingAhead(swapped, [])).toBe(true);
    expect(v.missingAhead(swapped, [{ seq: 2, senderId: 'a', sessionKey: 'sa', ctr: 1 }])).toBe(
      false,
    );
    expect(v.missingAhead(m1, [])).toBe(false);
  });

  it('envelopes that failed to open only advance the transcript', () => {
    const v = new TranscriptVerifier();
    const { opened: _o, ...failed } = new Sender('a', 'sa').next('x', { seq: 1 });
    expect(v.next(failed, noStatement)).toBeNull();
    expect(v.seq).toBe(1);
  });

  it('resumes from a checkpoint with the same hashes; without one it claims nothing it cannot compute', () => {
    const a = new Sender('a', 'sa');
    const full = new TranscriptVerifier();
    full.next(a.next('1', { seq: 1 }), noStatement);
    const cp = full.checkpoint();
    expect(cp?.seq).toBe(1);
    const resumed = new TranscriptVerifier(1, Buffer.from(cp!.hash, 'base64url'));
    const m2 = a.next('2', { seq: 2 });
    full.next(m2, noStatement);
    resumed.next(m2, noStatement);
    expect(resumed.seen()).toEqual(full.seen());
    const blind = new TranscriptVerifier(1);
    blind.next(m2, noStatement);
    expect(blind.seen()).toEqual({ seenSeq: 0, seenHash: ZERO_HASH });
    expect(blind.checkpoint()).toBeNull();
  });

  it('refuses an envelope out of seq order (the caller orders)', () => {
    expect(() =>
      new TranscriptVerifier().next(new Sender('a', 'sa').next('x', { seq: 2 }), noStatement),
    ).toThrow(RangeError);
  });
});
