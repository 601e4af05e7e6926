/**
 * Each contact's stream of stored envelopes to the connections joined to it on this relay:
 * subscribe, replay, live delivery, catch-up and gap repair (centrifuge-js likewise keeps a
 * channel's recovery in its own file). Design in docs/operations.md "Fan-out" and fanout.ts.
 *
 * The store, not the fan-out, is the authority on order. A join subscribes to the contact's
 * fan-out first (waiting until it is live) while buffering live envelopes, replays the log
 * after `since`, drains the buffer, then sends `joined`. From then on each connection gets
 * every seq exactly once, in seq order: an envelope already delivered is dropped, the next one
 * is delivered, one beyond a gap (the fan-out reordered or lost something) starts a repair from
 * the store. A connection's own sends are acked to it, never delivered back.
 *
 * Signals (typing, seen: docs/protocol.md "Signals: typing and seen") come through the same
 * subscription and go straight to every other member here, joined or joining, never stored,
 * never replayed, and never back to the connection that sent them.
 */
import {
  LIMITS,
  LatchkeyError,
  PROTOCOL_VERSION,
  type ServerFrame,
  type StoredEnvelope,
} from '@latchkey/protocol';
import { deliverText } from './envelope-json.ts';
import type {
  ContactEvent,
  EnvelopeEvent,
  Fanout,
  FanoutSubscription,
  SignalEvent,
} from './fanout.ts';
import type { RelayMetrics } from './metrics.ts';
import type { MessageStore } from './message-store.ts';

/** What the stream needs of a connection. */
export interface StreamPeer {
  /** Connection id, unique on this relay (fan-out events name the sending connection). */
  readonly id: number;
  /** False once the connection is closing: replays stop, nothing more is delivered. */
  readonly ready: boolean;
  /** Writes one serialized frame. */
  sendText(text: string): void;
}

export interface ContactStreamsOptions<P extends StreamPeer = StreamPeer> {
  store: Pick<MessageStore, 'history'>;
  fanout: Pick<Fanout, 'subscribe'>;
  /** This relay's id: its own connections' sends come back through the fan-out. */
  relayId: string;
  metrics: Pick<RelayMetrics, 'gapRepairs' | 'fanoutLag'>;
  /** A gap repair failed: the peer is told and closed (it resumes from its cursor elsewhere). */
  onRepairFailed: (peer: P, err: unknown) => void;
  now?: () => number;
}

function deliverFrame(envelope: StoredEnvelope): string {
  return JSON.stringify({ v: PROTOCOL_VERSION, type: 'deliver', envelope } satisfies ServerFrame);
}

/** One connection's place in its contact's stream. */
class Member<P extends StreamPeer> {
  /** While joining (or repairing a gap), live envelopes wait in `buffer`. */
  state: 'joining' | 'joined' = 'joining';
  buffer: StoredEnvelope[] = [];
  /** Seqs of the connection's own acked sends above lastSeq (never delivered back to it). */
  readonly own = new Set<number>();

  constructor(
    readonly peer: P,
    readonly contactId: string,
    /** Highest seq this connection has been given (or sent itself). */
    public lastSeq: number,
  ) {}

  /** Moves lastSeq over the connection's own sends. */
  skipOwn(): void {
    while (this.own.delete(this.lastSeq + 1)) this.lastSeq++;
    if (this.own.size > 1024) for (const s of this.own) if (s <= this.lastSeq) this.own.delete(s);
  }

  /** Delivers the envelope right after lastSeq (unless it is the connection's own). */
  deliverNext(e: StoredEnvelope, text?: string): void {
    if (!this.own.delete(e.seq)) this.peer.sendText(text ?? deliverFrame(e));
    this.lastSeq = e.seq;
  }
}

/** The streams of every contact with connections joined here. */
export class ContactStreams<P extends StreamPeer = StreamPeer> {
  readonly #opts: ContactStreamsOptions<P>;
  readonly #now: () => number;
  readonly #members = new Map<P, Member<P>>();
  /** Joined (or joining) members per contact. */
  readonly #byContact = new Map<string, Set<Member<P>>>();
  /** Fan-out subscriptions of the contacts that have members here. */
  readonly #subs = new Map<string, FanoutSubscription>();

  constructor(opts: ContactStreamsOptions<P>) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
  }

  /** True from a join until the peer leaves (or its join failed). */
  has(peer: P): boolean {
    return this.#members.has(peer);
  }

  /**
   * Joins the peer to its contact's stream from `since`: subscribes (and waits until the
   * fan-out subscription is live) while buffering live envelopes, replays the log, sends
   * `joined`. A peer that closes meanwhile gets nothing more.
   * @throws LatchkeyError UNAVAILABLE when the fan-out or the store fails; the peer has left.
   */
  async join(peer: P, contactId: string, since: number): Promise<void> {
    const m = new Member(peer, contactId, since);
    this.#members.set(peer, m);
    let set = this.#byContact.get(contactId);
    if (!set) this.#byContact.set(contactId, (set = new Set()));
    set.add(m);
    let sub = this.#subs.get(contactId);
    if (!sub) {
      sub = this.#opts.fanout.subscribe(contactId, (e) => this.#onEvent(e));
      this.#subs.set(contactId, sub);
    }
    try {
      await sub.ready.catch((err: unknown) => {
        throw new LatchkeyError('UNAVAILABLE', 'fan-out unavailable', {
          cause: err,
          detail: `fanout: ${err instanceof Error ? err.name : typeof err}`,
        });
      });
      if (!peer.ready) return;
      const head = await this.#replay(m);
      if (!peer.ready) return;
      m.state = 'joined';
      peer.sendText(JSON.stringify({ v: PROTOCOL_VERSION, type: 'joined', head }));
    } catch (err) {
      this.#remove(m);
      throw err;
    }
  }

  /** The peer leaves its contact's stream (closed, kicked); the last one ends the subscription. */
  leave(peer: P): void {
    const m = this.#members.get(peer);
    if (m) this.#remove(m);
  }

  /** The peer's own send was stored as `seq`: it is acked, never delivered back to it. */
  sent(peer: P, seq: number): void {
    const m = this.#members.get(peer);
    if (!m) return;
    m.own.add(seq);
    m.skipOwn();
  }

  /** The fan-out may have lost events (e.g. Redis reconnected): every member catches up. */
  resync(): void {
    for (const set of this.#byContact.values()) for (const m of set) this.#catchUp(m);
  }

  #remove(m: Member<P>): void {
    if (this.#members.get(m.peer) !== m) return;
    this.#members.delete(m.peer);
    const set = this.#byContact.get(m.contactId);
    if (!set) return;
    set.delete(m);
    if (set.size === 0) {
      this.#byContact.delete(m.contactId);
      this.#subs.get(m.contactId)?.unsubscribe();
      this.#subs.delete(m.contactId);
    }
  }

  #onEvent(e: ContactEvent): void {
    if (e.type === 'signal') this.#onSignal(e);
    else this.#onEnvelope(e);
  }

  /** A signal for every member of its contact here but the sending connection. */
  #onSignal(e: SignalEvent): void {
    const set = this.#byContact.get(e.contactId);
    if (!set) return;
    const text = JSON.stringify({
      v: PROTOCOL_VERSION,
      type: 'signal',
      from: e.from,
      signal: e.signal,
    } satisfies ServerFrame);
    for (const m of set) {
      if ((e.origin === this.#opts.relayId && e.conn === m.peer.id) || !m.peer.ready) continue;
      m.peer.sendText(text);
    }
  }

  /**
   * An envelope from the fan-out, for every member of its contact here: delivered when it is
   * the next seq, dropped when already delivered, buffered behind a gap that the store fills.
   */
  #onEnvelope(e: EnvelopeEvent): void {
    const { envelope } = e;
    const relayId = this.#opts.relayId;
    if (e.origin !== relayId) this.#opts.metrics.fanoutLag.observe((this.#now() - e.at) / 1000);
    const set = this.#byContact.get(envelope.contactId);
    if (!set) return;
    let text: string | undefined;
    for (const m of set) {
      if ((e.origin === relayId && e.conn === m.peer.id) || !m.peer.ready) continue;
      if (m.state === 'joining') {
        m.buffer.push(envelope);
        continue;
      }
      m.skipOwn();
      if (envelope.seq <= m.lastSeq) continue;
      if (envelope.seq === m.lastSeq + 1) {
        text ??= e.json === undefined ? deliverFrame(envelope) : deliverText(e.json, envelope.seq);
        m.deliverNext(envelope, text);
        m.skipOwn();
      } else {
        m.buffer.push(envelope);
        this.#catchUp(m);
      }
    }
  }

  /**
   * With live envelopes buffered, replays the log after lastSeq page by page, then drains the
   * buffer in seq order skipping what the replay already sent; a buffered envelope beyond a
   * gap means a smaller seq is still in flight (and already committed), so the store is read
   * again. Nothing is missed, nothing sent twice, the order is the seq order. Returns the head.
   */
  async #replay(m: Member<P>): Promise<number> {
    let head = 0;
    for (;;) {
      for (;;) {
        const page = await this.#opts.store.history(m.contactId, m.lastSeq, LIMITS.maxHistoryPage);
        if (!m.peer.ready) return head;
        head = Math.max(head, page.head);
        // a cursor past the head (a confused client) must not hide the next messages
        if (m.lastSeq > page.head) m.lastSeq = page.head;
        for (const e of page.envelopes) m.deliverNext(e);
        if (!page.more || page.envelopes.length === 0) break;
      }
      const buffered = m.buffer.sort((a, b) => a.seq - b.seq);
      m.buffer = [];
      for (const e of buffered) {
        m.skipOwn();
        if (e.seq <= m.lastSeq) continue;
        if (e.seq !== m.lastSeq + 1) {
          m.buffer.push(e);
          continue;
        }
        m.deliverNext(e);
        head = Math.max(head, e.seq);
      }
      m.skipOwn();
      if (m.buffer.length === 0) return head;
      this.#opts.metrics.gapRepairs++;
    }
  }

  /** Fills a joined member's gap from the store (see #replay). */
  #catchUp(m: Member<P>): void {
    if (m.state !== 'joined' || !m.peer.ready) return;
    m.state = 'joining';
    this.#opts.metrics.gapRepairs++;
    this.#replay(m).then(
      () => {
        if (m.state === 'joining') m.state = 'joined';
      },
      (err: unknown) => {
        m.buffer = [];
        this.#opts.onRepairFailed(m.peer, err);
      },
    );
  }
}
