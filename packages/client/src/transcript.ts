/**
 * Transcript checks (docs/threat-model.md "Transcript integrity"): run by every member over the
 * envelopes of its contact in seq order, they catch a relay (or anyone with its database) that
 * replays, reorders, drops, truncates or forks history, a removed member speaking after its
 * removal, a message sealed under a superseded epoch, and impossible times.
 *
 * State: the transcript hash at every seq (see @latchkey/crypto/transcript), and per sender
 * session (sender id and certified session key) the last counter, chain value and sentAt.
 * Pure: the caller passes the clock and the statement view, so it is unit-tested with fakes.
 */
import { toBase64Url } from '@latchkey/crypto/codec';
import { constantTimeEqual } from '@latchkey/crypto/compare';
import { ZERO_HASH, chainStep, transcriptStep } from '@latchkey/crypto/transcript';
import { FRESHNESS } from '@latchkey/protocol';
import type { StatementView } from './key-ring.ts';

export type IntegrityCode =
  'REPLAYED' | 'REORDERED' | 'MISSING' | 'FORKED' | 'STALE_EPOCH' | 'SENDER_REMOVED' | 'CLOCK';

export interface IntegrityFinding {
  code: IntegrityCode;
  /** MISSING: how many messages are missing before this one. */
  missing?: number;
}

/** One stored envelope as the checks see it. */
export interface TranscriptInput {
  seq: number;
  senderId: string;
  msgId: string;
  epoch: number;
  sentAt: number;
  ctr: number;
  prev: Uint8Array;
  seenSeq: number;
  seenHash: Uint8Array;
  /** The envelope's signature as stored (identifies it in the transcript). */
  sig: Uint8Array;
  /** The opened plaintext and the certified session key; absent when it failed to open. */
  opened?: { plaintext: Uint8Array; sessionKey: string; certNotAfter: number };
  /** Delivered live (not replayed history): the receiver's clock then bounds its times. */
  live: boolean;
}

/** A later envelope already known (lookahead), to tell a reorder from a loss. */
export interface LaterEnvelope {
  seq: number;
  senderId: string;
  sessionKey?: string | undefined;
  ctr: number;
}

interface Session {
  ctr: number;
  chain: Uint8Array;
  sentAt: number;
}

/** A verifier's state, to resume in a later client without losing the checks. */
export interface TranscriptCheckpoint {
  seq: number;
  hash: string;
}

const MAX_HASHES = 50_000;
const MAX_SEEN_IDS = 200_000;

export class TranscriptVerifier {
  #seq: number;
  #hash: Uint8Array;
  /** Whether the hash is known (from seq 0, or from an anchor; lost at a hole in the seqs). */
  #anchored: boolean;
  readonly #hashes = new Map<number, Uint8Array>();
  readonly #sessions = new Map<string, Session>();
  /** Latest sentAt per sender across its sessions (two devices may differ by the clock skew). */
  readonly #senderSentAt = new Map<string, number>();
  readonly #seenIds = new Set<string>();
  /** The first seq at which each epoch appeared. */
  readonly #firstSeqOfEpoch = new Map<number, number>();
  /** Latest sentAt among opened envelopes of members not removed, and its seq. */
  #latestSentAt = Number.NEGATIVE_INFINITY;
  /** Whether every sender session is known from its start (history read from seq 0). */
  #complete: boolean;

  /**
   * @param from - The seq before the first envelope this verifier will see (0: the whole history).
   * @param anchor - The transcript hash at `from` (base64url), when resuming from a checkpoint.
   */
  constructor(from = 0, anchor?: Uint8Array) {
    this.#seq = from;
    this.#anchored = from === 0 || anchor !== undefined;
    this.#hash = from === 0 ? ZERO_HASH : (anchor ?? ZERO_HASH);
    this.#complete = from === 0;
    if (this.#anchored) this.#hashes.set(from, this.#hash);
  }

  /** The last seq processed. */
  get seq(): number {
    return this.#seq;
  }

  /**
   * What a sender puts in its next envelope: the last seq it verified and the transcript hash
   * there, or seq 0 when this verifier could not compute the hash (resumed without an anchor).
   */
  seen(): { seenSeq: number; seenHash: Uint8Array } {
    return this.#anchored
      ? { seenSeq: this.#seq, seenHash: this.#hash }
      : { seenSeq: 0, seenHash: ZERO_HASH };
  }

  checkpoint(): TranscriptCheckpoint | null {
    return this.#anchored ? { seq: this.#seq, hash: toBase64Url(this.#hash) } : null;
  }

  /**
   * Processes the next envelope (seq must be `seq + 1`) and returns the first check it fails, or
   * null. Envelopes that failed to open only advance the transcript.
   * @param ctx.statement - The membership and epochs as last stated by the key service.
   * @param ctx.now - This receiver's clock.
   * @param ctx.later - Envelopes with higher seqs already known, if any.
   * @throws RangeError when `input.seq` is not the next seq.
   */
  next(
    input: TranscriptInput,
    ctx: { statement: StatementView | null; now: number; later?: readonly LaterEnvelope[] },
  ): IntegrityFinding | null {
    if (input.seq !== this.#seq + 1)
      throw new RangeError(`expected seq ${this.#seq + 1}, got ${input.seq}`);
    const finding = input.opened ? this.#check(input, input.opened, ctx) : null;
    this.#advance(input);
    return finding;
  }

  /**
   * Skips a hole in the relay's numbering (the caller reports it as MISSING): the next envelope
   * is `nextSeq`. The transcript hash is unknown from here, so what senders had seen is no longer
   * compared, and this verifier vouches for nothing in `seen()`.
   */
  skipTo(nextSeq: number): void {
    if (nextSeq <= this.#seq + 1) return;
    this.#seq = nextSeq - 1;
    this.#anchored = false;
    this.#complete = false;
    this.#hashes.clear();
  }

  /**
   * Whether the next envelope would show messages missing before it (a jump in its session's
   * counter, or a sender that had seen more than precedes it) that no later envelope known yet
   * fills. A caller that can wait a moment for more to arrive tells a reorder from a loss.
   */
  missingAhead(input: TranscriptInput, later: readonly LaterEnvelope[]): boolean {
    const opened = input.opened;
    if (!opened || input.seq !== this.#seq + 1) return false;
    if (input.seenSeq >= input.seq && !later.some((l) => l.seq <= input.seenSeq + 1)) return true;
    const session = this.#sessions.get(`${input.senderId}\u0000${opened.sessionKey}`);
    const from = session?.ctr ?? (this.#complete ? 0 : input.ctr - 1);
    if (input.ctr <= from + 1) return false;
    return !later.some(
      (l) =>
        l.senderId === input.senderId &&
        l.sessionKey === opened.sessionKey &&
        l.ctr > from &&
        l.ctr < input.ctr,
    );
  }

  #advance(input: TranscriptInput): void {
    this.#seq = input.seq;
    this.#hash = transcriptStep(this.#hash, input.seq, input.sig);
    if (this.#anchored) {
      this.#hashes.set(input.seq, this.#hash);
      if (this.#hashes.size > MAX_HASHES)
        this.#hashes.delete(this.#hashes.keys().next().value as number);
    }
  }

  #check(
    input: TranscriptInput,
    opened: NonNullable<TranscriptInput['opened']>,
    ctx: { statement: StatementView | null; now: number; later?: readonly LaterEnvelope[] },
  ): IntegrityFinding | null {
    const later = ctx.later ?? [];
    const st = ctx.statement;
    const id = `${input.senderId}\u0000${input.msgId}`;
    // 1. A message id a sender already used: the same message again.
    if (this.#seenIds.has(id)) return { code: 'REPLAYED' };
    this.#seenIds.add(id);
    if (this.#seenIds.size > MAX_SEEN_IDS)
      this.#seenIds.delete(this.#seenIds.values().next().value as string);

    const key = `${input.senderId}\u0000${opened.sessionKey}`;
    const session = this.#sessions.get(key);
    const chainAfter = chainStep(input.prev, input.ctr, input.msgId, opened.plaintext);
    let finding: IntegrityFinding | null = null;
    const flag = (f: IntegrityFinding): void => {
      finding ??= f;
    };

    // 2. The sender session's chain: counters in order, each linked to the one before.
    if (session === undefined) {
      if (input.ctr > 1 && this.#complete) {
        const earlier = later.some(
          (l) =>
            l.senderId === input.senderId &&
            l.sessionKey === opened.sessionKey &&
            l.ctr < input.ctr,
        );
        flag(earlier ? { code: 'REORDERED' } : { code: 'MISSING', missing: input.ctr - 1 });
      } else if (input.ctr === 1 && !constantTimeEqual(input.prev, ZERO_HASH)) {
        flag({ code: 'FORKED' });
      }
    } else if (input.ctr === session.ctr + 1) {
      if (!constantTimeEqual(input.prev, session.chain)) flag({ code: 'FORKED' });
    } else if (input.ctr > session.ctr + 1) {
      const between = later.some(
        (l) =>
          l.senderId === input.senderId &&
          l.sessionKey === opened.sessionKey &&
          l.ctr > session.ctr &&
          l.ctr < input.ctr,
      );
      flag(
        between ? { code: 'REORDERED' } : { code: 'MISSING', missing: input.ctr - session.ctr - 1 },
      );
    } else if (input.ctr === session.ctr) {
      flag({ code: 'FORKED' }); // two different messages claim one place in the chain
    } else {
      flag({ code: 'REORDERED' });
    }
    // 3. What the sender had seen must be this transcript, and must precede this message.
    if (input.seenSeq >= input.seq) {
      // It had seen messages that are not before it here: moved up, or the history was cut.
      const movedUp = later.some((l) => l.seq <= input.seenSeq + 1);
      flag(
        movedUp
          ? { code: 'REORDERED' }
          : { code: 'MISSING', missing: input.seenSeq - input.seq + 1 },
      );
    } else if (input.seenSeq > 0) {
      const mine = this.#hashes.get(input.seenSeq);
      if (mine !== undefined && !constantTimeEqual(mine, input.seenHash)) flag({ code: 'FORKED' });
    }

    if (session !== undefined && input.sentAt < session.sentAt) flag({ code: 'CLOCK' });
    const senderLatest = this.#senderSentAt.get(input.senderId);
    if (senderLatest !== undefined && input.sentAt < senderLatest - FRESHNESS.clockSkewMs)
      flag({ code: 'CLOCK' });
    this.#senderSentAt.set(input.senderId, Math.max(senderLatest ?? 0, input.sentAt));
    if (session === undefined || input.ctr > session.ctr) {
      this.#sessions.set(key, {
        ctr: input.ctr,
        chain: chainAfter,
        sentAt: Math.max(input.sentAt, session?.sentAt ?? 0),
      });
    }

    // 4. Membership: nothing signed by a participant after its removal.
    const removedAt = st?.removedAt(input.senderId);
    if (removedAt !== undefined) {
      const after =
        input.sentAt > removedAt ||
        (input.live && ctx.now > removedAt + FRESHNESS.graceMs) ||
        this.#latestSentAt > removedAt + FRESHNESS.graceMs;
      if (after) flag({ code: 'SENDER_REMOVED' });
    }

    // 5. Epochs: nobody seals under an epoch superseded longer than the grace.
    let newerSeen = false;
    for (const [epoch, first] of this.#firstSeqOfEpoch) {
      if (epoch > input.epoch && first <= input.seenSeq) newerSeen = true;
    }
    const supersededAt = st?.supersededAt(input.epoch);
    if (
      newerSeen ||
      (supersededAt !== undefined &&
        (input.sentAt > supersededAt + FRESHNESS.graceMs ||
          (input.live && ctx.now > supersededAt + FRESHNESS.graceMs)))
    ) {
      flag({ code: 'STALE_EPOCH' });
    }

    // 6. Times: never in the receiver's future; live, only under a certificate still valid now.
    if (input.sentAt > ctx.now + FRESHNESS.clockSkewMs) flag({ code: 'CLOCK' });
    if (input.live && ctx.now > opened.certNotAfter + FRESHNESS.clockSkewMs)
      flag({ code: 'CLOCK' });

    if (!this.#firstSeqOfEpoch.has(input.epoch)) this.#firstSeqOfEpoch.set(input.epoch, input.seq);
    if (removedAt === undefined) this.#latestSentAt = Math.max(this.#latestSentAt, input.sentAt);
    return finding;
  }
}
