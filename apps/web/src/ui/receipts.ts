/**
 * Receipts on our own messages (`data-receipt` on each own message with a seq): `sent` once the
 * relay has stored it (its ack), `delivered` once another member's client has received it (its
 * signed `delivered` receipt covers the seq), `seen` once another member has read it (its signed
 * `seen` receipt, sent only while the message was shown in a focused, visible tab, covers the
 * seq). Receipts only go up. The other direction: `markSeen`/`markDelivered` for what others sent
 * (docs/web.md "Typing and receipts").
 */
import type { Role } from '@latchkey/protocol';
import { TypingIndicator } from './typing.ts';

export type ReceiptName = 'sent' | 'delivered' | 'seen';

export class Receipts {
  readonly #root: HTMLElement;
  #seen = 0;
  #delivered = 0;

  /** @param root - The message list whose own messages carry the receipts. */
  constructor(root: HTMLElement) {
    this.#root = root;
  }

  /** The receipt of an own message stored at `seq`, as far as known now. */
  of(seq: number): ReceiptName {
    return seq <= this.#seen ? 'seen' : seq <= this.#delivered ? 'delivered' : 'sent';
  }

  /** Another member's receipt up to `seq`: own messages it covers go up. */
  update(kind: 'seen' | 'delivered', seq: number): void {
    if (kind === 'seen') {
      if (seq <= this.#seen) return;
      this.#seen = seq;
    } else {
      if (seq <= this.#delivered) return;
      this.#delivered = seq;
    }
    const own = this.#root.querySelectorAll<HTMLElement>(
      '[data-own=true][data-seq]:not([data-receipt=seen])',
    );
    for (const el of own) el.dataset.receipt = this.of(Number(el.dataset.seq));
  }
}

/** Whether what is on screen is being looked at: a visible, focused tab. */
export function looking(): boolean {
  return document.visibilityState === 'visible' && document.hasFocus();
}

/** What the view uses of a client (optional: test fakes may have none of it). */
export interface SignalClient {
  on?(event: 'typing', l: (e: TypingEvent) => void): () => void;
  on?(
    event: 'seen' | 'delivered',
    l: (e: { participantId: string; seq: number }) => void,
  ): () => void;
  typing?(state: 'start' | 'stop'): void;
  markSeen?(seq: number): void;
  markDelivered?(seq: number): void;
}
type TypingEvent = { participantId: string; role: Role; state: 'start' | 'stop' };

/**
 * A conversation's signals on screen and on the wire: the typing indicator, the receipts on our
 * messages, and ours for the others' messages (delivered when they arrive, seen when they arrive
 * or the tab is looked at again).
 */
export class SignalsView {
  readonly typing = new TypingIndicator();
  readonly receipts: Receipts;
  readonly #client: () => SignalClient | null;
  readonly #self: () => string | null;
  /** The highest seq of a message another member sent. */
  #lastOther = 0;

  constructor(listRoot: HTMLElement, client: () => SignalClient | null, self: () => string | null) {
    this.receipts = new Receipts(listRoot);
    this.#client = client;
    this.#self = self;
  }

  /** Follows a new client's signal events (the previous client's typers are gone). */
  bind(client: SignalClient): void {
    this.typing.clear();
    client.on?.('typing', (e: TypingEvent) => {
      if (e.participantId !== this.#self()) this.typing.update(e);
    });
    for (const kind of ['seen', 'delivered'] as const) {
      client.on?.(kind, (e: { participantId: string; seq: number }) => {
        if (e.participantId !== this.#self()) this.receipts.update(kind, e.seq);
      });
    }
  }

  /** The composer's text changed. */
  input(text: string): void {
    this.#client()?.typing?.(text.length > 0 ? 'start' : 'stop');
  }

  /** We sent what we typed. */
  sent(): void {
    this.#client()?.typing?.('stop');
  }

  /** A message of another member arrived at `seq` (and is shown). */
  received(seq: number): void {
    this.#lastOther = Math.max(this.#lastOther, seq);
    this.#client()?.markDelivered?.(seq);
    this.look();
  }

  /** Marks what is shown as seen when the tab is looked at. */
  look(): void {
    if (this.#lastOther > 0 && looking()) this.#client()?.markSeen?.(this.#lastOther);
  }

  /** Listens for the tab being looked at again; returns the remover. */
  listen(): () => void {
    const look = (): void => this.look();
    window.addEventListener('focus', look);
    document.addEventListener('visibilitychange', look);
    return () => {
      window.removeEventListener('focus', look);
      document.removeEventListener('visibilitychange', look);
    };
  }
}
