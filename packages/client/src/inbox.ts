/**
 * The inbox (docs/protocol.md "Ordering and resume"): envelopes arrive live or as replayed
 * history, possibly out of order; the inbox opens them, puts them in seq order, fills a lasting
 * gap from history, and runs the transcript checks (transcript.ts) on each in order before the
 * application sees it, so every seq is emitted once, in order, as a message or as suspect.
 */
import type { MessageBody, StoredEnvelope } from '@latchkey/protocol';
import { roleMaySend } from './file-body.ts';
import type { StatementView } from './key-ring.ts';
import { transcriptInput, type Opened } from './open.ts';
import { TranscriptVerifier, type LaterEnvelope, type TranscriptCheckpoint } from './transcript.ts';
import type { ChatMessage, FailedMessage, HistoryEntry } from './types.ts';
import { fromBase64Url } from '@latchkey/crypto/codec';

/**
 * How long a hole in the seq order may last before it is filled from history, and how long an
 * envelope with messages seemingly missing before it waits for them to turn up (ms).
 */
const GAP_WAIT_MS = 300;

export interface JudgeContext {
  statement: StatementView | null;
  now: number;
  selfId: string;
  later?: readonly LaterEnvelope[];
}

/** The opened body behind each checked message (the client reads files and verdicts from it). */
export const bodyOf = new WeakMap<ChatMessage, MessageBody>();

/** Runs the next envelope through the checks and says how it is to be shown. */
export function judge(
  v: TranscriptVerifier,
  o: Opened,
  live: boolean,
  ctx: JudgeContext,
): HistoryEntry {
  const env = o.env;
  const finding = v.next(transcriptInput(o, live), ctx);
  if (!o.ok)
    return { ok: false, seq: env.seq, msgId: env.msgId, senderId: env.senderId, code: o.code };
  if (finding) {
    return {
      ok: false,
      seq: env.seq,
      msgId: env.msgId,
      senderId: env.senderId,
      code: 'INTEGRITY',
      integrity: finding.code,
      ...(finding.missing === undefined ? {} : { missing: finding.missing }),
      ...(finding.code === 'REPLAYED' ? {} : { text: o.text }),
      sentAt: env.sentAt,
      epoch: env.epoch,
    };
  }
  // A body its sender's certified role may not send (text from a scanner, a verdict from a
  // visitor) is refused, never shown as its content.
  if (!roleMaySend(o.role, o.body)) {
    return {
      ok: false,
      seq: env.seq,
      msgId: env.msgId,
      senderId: env.senderId,
      code: 'FORBIDDEN',
      sentAt: env.sentAt,
      epoch: env.epoch,
    };
  }
  const message: { ok: true } & ChatMessage = {
    ok: true,
    seq: env.seq,
    msgId: env.msgId,
    senderId: env.senderId,
    senderRole: o.role,
    sentAt: env.sentAt,
    epoch: env.epoch,
    text: o.text,
    own: env.senderId === ctx.selfId,
  };
  bodyOf.set(message, o.body);
  return message;
}

/** What later envelopes show of themselves to the checks (lookahead). */
export function laterOf(items: Iterable<Opened>): LaterEnvelope[] {
  const out: LaterEnvelope[] = [];
  for (const o of items)
    out.push({
      seq: o.env.seq,
      senderId: o.env.senderId,
      sessionKey: o.ok ? o.sessionKey : undefined,
      ctr: o.env.ctr,
    });
  return out;
}

/** A verifier resuming after `since`: anchored when the checkpoint is at that seq. */
export function verifierFrom(
  since: number,
  checkpoint?: TranscriptCheckpoint | null,
): TranscriptVerifier {
  if (since > 0 && checkpoint && checkpoint.seq === since)
    return new TranscriptVerifier(since, fromBase64Url(checkpoint.hash));
  return new TranscriptVerifier(since);
}

export interface InboxDeps {
  selfId: string;
  now(): number;
  statement(): StatementView | null;
  open(env: StoredEnvelope): Promise<Opened>;
  /** One page of history after `since`; rejects when not connected. */
  page(since: number): Promise<StoredEnvelope[]>;
  /** Called for each envelope that opened, in seq order (message-based rotation counts them). */
  onOpened?(o: Extract<Opened, { ok: true }>): void;
  message(m: ChatMessage): void;
  failed(f: FailedMessage): void;
  /** Whether the connection is up (gaps are filled only then). */
  connected(): boolean;
}

interface Buffered {
  opened: Opened;
  live: boolean;
}

export class Inbox {
  readonly #deps: InboxDeps;
  readonly #verifier: TranscriptVerifier;
  readonly #buffer = new Map<number, Buffered>();
  #chain: Promise<void> = Promise.resolve();
  #gapTimer: ReturnType<typeof setTimeout> | null = null;
  /** Holds the next envelope a moment when messages look missing before it. */
  #holdTimer: ReturnType<typeof setTimeout> | null = null;
  /** The seq whose hold is over: judged now with whatever arrived meanwhile. */
  #released = 0;
  #closed = false;

  constructor(deps: InboxDeps, since: number, checkpoint?: TranscriptCheckpoint | null) {
    this.#deps = deps;
    this.#verifier = verifierFrom(since, checkpoint);
  }

  /** Highest seq emitted so far (all before it have been emitted, in order). */
  get lastSeq(): number {
    return this.#verifier.seq;
  }

  /** What a sender puts in its next envelope (transcript.ts). */
  seen(): { seenSeq: number; seenHash: Uint8Array } {
    return this.#verifier.seen();
  }

  checkpoint(): TranscriptCheckpoint | null {
    return this.#verifier.checkpoint();
  }

  /** Opens a received envelope and emits what is in order. */
  enqueue(env: StoredEnvelope, live: boolean): void {
    this.#chain = this.#chain.then(async () => {
      if (env.seq <= this.lastSeq || this.#buffer.has(env.seq)) return;
      this.#buffer.set(env.seq, { opened: await this.#deps.open(env), live });
      this.#drain();
    });
  }

  /** An own envelope the relay acknowledged at its seq: joins the stream without a round trip. */
  addOwn(opened: Opened): void {
    this.#chain = this.#chain.then(() => {
      const seq = opened.env.seq;
      if (seq <= this.lastSeq || this.#buffer.has(seq)) return;
      this.#buffer.set(seq, { opened, live: false });
      this.#drain();
    });
  }

  /** Resolves once everything queued so far has been processed. */
  settled(): Promise<void> {
    return this.#chain;
  }

  close(): void {
    this.#closed = true;
    if (this.#gapTimer) clearTimeout(this.#gapTimer);
    if (this.#holdTimer) clearTimeout(this.#holdTimer);
    this.#gapTimer = null;
    this.#holdTimer = null;
  }

  #drain(): void {
    for (;;) {
      const next = this.#buffer.get(this.lastSeq + 1);
      if (!next) break;
      const seq = next.opened.env.seq;
      const rest = [...this.#buffer.values()].filter((b) => b.opened.env.seq !== seq);
      const later = laterOf(rest.map((b) => b.opened));
      if (
        this.#released !== seq &&
        this.#verifier.missingAhead(transcriptInput(next.opened, next.live), later)
      ) {
        // Messages look missing before it: wait a moment for them (a reorder), then judge.
        if (this.#holdTimer === null && !this.#closed) {
          this.#holdTimer = setTimeout(() => {
            this.#holdTimer = null;
            this.#released = seq;
            this.#chain = this.#chain.then(() => this.#drain());
          }, GAP_WAIT_MS);
        }
        break;
      }
      this.#buffer.delete(seq);
      const entry = judge(this.#verifier, next.opened, next.live, {
        statement: this.#deps.statement(),
        now: this.#deps.now(),
        selfId: this.#deps.selfId,
        later,
      });
      if (next.opened.ok) this.#deps.onOpened?.(next.opened);
      if (entry.ok) {
        const { ok: _ok, ...msg } = entry;
        const body = bodyOf.get(entry);
        if (body) bodyOf.set(msg, body);
        this.#deps.message(msg);
      } else {
        const { ok: _ok, ...failed } = entry;
        this.#deps.failed(failed);
      }
    }
    if (this.#buffer.size > 0 && !this.#gapTimer && !this.#closed) {
      this.#gapTimer = setTimeout(() => {
        this.#gapTimer = null;
        this.#chain = this.#chain.then(() => this.#fillGap());
      }, GAP_WAIT_MS);
    }
  }

  async #fillGap(): Promise<void> {
    if (this.#buffer.size === 0 || !this.#deps.connected() || this.#closed) return;
    try {
      const envelopes = await this.#deps.page(this.lastSeq);
      const first = envelopes[0];
      if (first !== undefined && first.seq > this.lastSeq + 1) {
        // The relay itself has nothing at the next seq: a hole in its numbering.
        const next = this.lastSeq + 1;
        this.#deps.failed({
          seq: next,
          msgId: '',
          senderId: '',
          code: 'INTEGRITY',
          integrity: 'MISSING',
          missing: first.seq - next,
        });
        this.#verifier.skipTo(first.seq);
        for (const seq of [...this.#buffer.keys()]) if (seq < first.seq) this.#buffer.delete(seq);
      }
      for (const env of envelopes) {
        if (env.seq > this.lastSeq && !this.#buffer.has(env.seq))
          this.#buffer.set(env.seq, { opened: await this.#deps.open(env), live: false });
      }
    } catch {
      // Retried on the next drain.
    }
    this.#drain();
  }
}
