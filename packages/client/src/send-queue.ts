/**
 * The send queue (docs/protocol.md "Ordering and resumption"): sealed envelopes wait here, in the
 * order they were sealed, until the relay acknowledges them. Each is recorded in the outbox store
 * before it may leave (a reload cannot lose it), at most SEND_WINDOW are in flight on one
 * connection, at the client's own pace (a token bucket below the relay's rate limit), and what is
 * unanswered is sent again, once, in order, after a reconnect or a RATE_LIMITED (the relay
 * deduplicates by msgId).
 */
import type { LatchkeyError } from '@latchkey/protocol';
import {
  PROTOCOL_VERSION,
  backoffDelay,
  type AckFrame,
  type ClientFrame,
  type ErrorCode,
  type SealedEnvelope,
} from '@latchkey/protocol';
import type { OutboxStore } from './outbox.ts';

export interface SendResult {
  seq: number;
  msgId: string;
  duplicate: boolean;
}

export interface QueuedSend {
  envelope: SealedEnvelope;
  /** The text or caption, for the own message once stored. */
  text: string;
  /** The plaintext exactly as sealed (the transcript chains over it). */
  plaintext: Uint8Array;
  /** Transmitted on the current connection and not yet answered. */
  sent: boolean;
  /** Recorded in the outbox store (only then may it leave: a reload cannot lose it). */
  recorded: boolean;
  resolve: (r: SendResult) => void;
  reject: (e: LatchkeyError) => void;
}

/** Sends in flight (transmitted, not yet acked) on one connection. */
const SEND_WINDOW = 32;
/** The client's own pace, below the relay's default per-connection limit (100/s, burst 200). */
const SEND_RATE = { perSecond: 80, burst: 160 };
/** Errors after which retrying the same frame cannot succeed. */
const RETRYABLE: ReadonlySet<ErrorCode> = new Set([
  'RATE_LIMITED',
  'UNAVAILABLE',
  'INTERNAL',
  'TIMEOUT',
]);

export interface SendQueueDeps {
  store: OutboxStore;
  transmit(frame: ClientFrame): void;
  /** Whether the connection is ready for sends. */
  ready(): boolean;
  /** An entry the relay stored at `seq` (before its promise resolves). */
  stored(entry: QueuedSend, seq: number): void;
}

export class SendQueue {
  readonly #deps: SendQueueDeps;
  #entries: QueuedSend[] = [];
  #tokens = SEND_RATE.burst;
  #tokensAt = Date.now();
  #paceTimer: ReturnType<typeof setTimeout> | null = null;
  #retryTimer: ReturnType<typeof setTimeout> | null = null;
  #backoff = 0;

  constructor(deps: SendQueueDeps) {
    this.#deps = deps;
  }

  get length(): number {
    return this.#entries.length;
  }

  has(msgId: string): boolean {
    return this.#entries.some((e) => e.envelope.msgId === msgId);
  }

  msgIds(): Set<string> {
    return new Set(this.#entries.map((e) => e.envelope.msgId));
  }

  /** Queues a sealed envelope; resolves on its ack. Recorded in the store before it leaves. */
  enqueue(envelope: SealedEnvelope, text: string, plaintext: Uint8Array): Promise<SendResult> {
    return new Promise<SendResult>((resolve, reject) => {
      const entry: QueuedSend = {
        envelope,
        text,
        plaintext,
        sent: false,
        recorded: false,
        resolve,
        reject,
      };
      this.#entries.push(entry);
      // A failing store only costs the reload guarantee, never the send.
      void this.#deps.store
        .put(envelope)
        .catch(() => undefined)
        .then(() => {
          entry.recorded = true;
          this.pump();
        });
    });
  }

  /** Puts envelopes an earlier session left (already recorded) ahead of everything new. */
  prepend(restored: { envelope: SealedEnvelope; text: string; plaintext: Uint8Array }[]): void {
    const entries = restored.map((r) => ({
      ...r,
      sent: false,
      recorded: true,
      resolve: () => undefined,
      reject: () => undefined,
    }));
    this.#entries = [...entries, ...this.#entries];
  }

  onAck(frame: AckFrame): void {
    const i = this.#entries.findIndex((e) => e.envelope.msgId === frame.msgId);
    if (i < 0) return;
    const [entry] = this.#entries.splice(i, 1);
    if (!entry) return;
    void this.#deps.store
      .delete(entry.envelope.contactId, entry.envelope.msgId)
      .catch(() => undefined);
    this.#deps.stored(entry, frame.seq);
    entry.resolve({ seq: frame.seq, msgId: frame.msgId, duplicate: frame.duplicate });
    this.#backoff = 0;
    this.pump();
  }

  /** An error naming one of our messages: retried later when it may succeed, else rejected. */
  onError(msgId: string, err: LatchkeyError): void {
    const i = this.#entries.findIndex((e) => e.envelope.msgId === msgId);
    const entry = this.#entries[i];
    if (!entry) return;
    if (RETRYABLE.has(err.code)) {
      entry.sent = false;
      this.#retryLater();
      return;
    }
    this.#entries.splice(i, 1);
    void this.#deps.store
      .delete(entry.envelope.contactId, entry.envelope.msgId)
      .catch(() => undefined);
    entry.reject(err);
  }

  /**
   * The relay drops a frame over its rate before reading it, so the answer names no message:
   * send again whatever is unanswered (the relay dedups by msgId), a bit later.
   */
  onRateLimited(): void {
    for (const e of this.#entries) e.sent = false;
    this.#retryLater();
  }

  /** A new connection: nothing is in flight on it yet. */
  resend(): void {
    for (const e of this.#entries) e.sent = false;
    this.pump();
  }

  failAll(err: LatchkeyError): void {
    const pending = this.#entries;
    this.#entries = [];
    for (const e of pending) e.reject(err);
  }

  close(): void {
    if (this.#paceTimer) clearTimeout(this.#paceTimer);
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#paceTimer = null;
    this.#retryTimer = null;
  }

  /** Retries unanswered sends after a growing pause (reset by the next ack). */
  #retryLater(): void {
    if (this.#retryTimer) return;
    const delay = backoffDelay(this.#backoff, { baseMs: 250, maxMs: 5000 });
    this.#backoff = Math.min(this.#backoff + 1, 5);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      this.pump();
    }, delay);
  }

  /** Transmits queued sends in order, within the window and the pace. */
  pump(): void {
    if (!this.#deps.ready() || this.#retryTimer) return;
    let inflight = 0;
    for (const e of this.#entries) if (e.sent) inflight++;
    const now = Date.now();
    this.#tokens = Math.min(
      SEND_RATE.burst,
      this.#tokens + ((now - this.#tokensAt) * SEND_RATE.perSecond) / 1000,
    );
    this.#tokensAt = now;
    for (const e of this.#entries) {
      if (inflight >= SEND_WINDOW) return;
      if (e.sent) continue;
      if (!e.recorded) return; // keeps the order: later ones wait for this one
      if (this.#tokens < 1) {
        if (!this.#paceTimer) {
          this.#paceTimer = setTimeout(
            () => {
              this.#paceTimer = null;
              this.pump();
            },
            Math.ceil(1000 / SEND_RATE.perSecond),
          );
        }
        return;
      }
      this.#tokens -= 1;
      e.sent = true;
      inflight++;
      this.#deps.transmit({ v: PROTOCOL_VERSION, type: 'send', envelope: e.envelope });
    }
  }
}
