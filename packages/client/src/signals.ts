/**
 * Typing indicators and seen receipts (docs/protocol.md "Signals: typing and seen"): sealing our
 * signals under the contact's current key and signing them with our certified session key, and
 * opening, verifying and judging those of the others before they become `typing` and `seen`
 * events. A signal that fails any check (certificate, contact, sender, epoch, signature, tag,
 * schema, role, age, replay, a seen seq not above the last one) is dropped and counted, never
 * shown. Sending: `typing('start')` goes out at most once per SIGNAL_LIMITS.typingThrottleMs and
 * stops by itself after TYPING_IDLE_MS without another start; receipts (`seen`: read in a focused
 * view; `delivered`: received by the client) are monotonic, at most one of a kind per
 * SEEN_THROTTLE_MS (the highest seq). Receiving: a typing start expires
 * after SIGNAL_LIMITS.typingExpiryMs without a refresh (a `stop` event is emitted then).
 */
import { fromBase64Url, toBase64Url, utf8Decode, utf8Encode } from '@latchkey/crypto/codec';
import { openSignal, sealSignal } from '@latchkey/crypto/signal';
import {
  FRESHNESS,
  PROTOCOL_VERSION,
  SIGNAL_LIMITS,
  SIGNAL_ROLES,
  SignalBody,
  type ClientFrame,
  type Role,
  type SealedSignal,
} from '@latchkey/protocol';
import { signedBody } from './certificate.ts';
import type { Identity, KeySession } from './key-session.ts';

/** Our typing stops by itself this long after the last `typing('start')` (ms). */
export const TYPING_IDLE_MS = 5_000;
/** At most one receipt of a kind per this interval (ms); the highest seq wins. */
export const SEEN_THROTTLE_MS = 1_000;
/** Nonces remembered to refuse a replayed signal within its age window. */
const MAX_NONCES = 4096;

export interface TypingEvent {
  participantId: string;
  role: Role;
  state: 'start' | 'stop';
}
export interface SeenEvent {
  participantId: string;
  role: Role;
  seq: number;
}

export type ReceiptKind = 'seen' | 'delivered';
interface Receipt {
  sent: number;
  wanted: number;
  at: number;
  timer: ReturnType<typeof setTimeout> | undefined;
}
const newReceipt = (): Receipt => ({
  sent: 0,
  wanted: 0,
  at: Number.NEGATIVE_INFINITY,
  timer: undefined,
});

/** What signals need of the client: who we are and our keys, the connection, events, clock. */
export interface SignalDeps {
  session(): { id: Identity | null; keys: KeySession | null; serviceKey: Uint8Array | null };
  conn: { readonly state: string; transmit(frame: ClientFrame): void };
  events: {
    emit(kind: 'typing', e: TypingEvent): void;
    emit(kind: ReceiptKind, e: SeenEvent): void;
  };
  now(): number;
}

export class Signals {
  readonly #d: SignalDeps;
  /** Signals dropped because a check failed (never shown). */
  dropped = 0;
  #nextId = 1;
  #typingSentAt = Number.NEGATIVE_INFINITY;
  #typingOn = false;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  /** Our receipts of each kind: the highest seq sent, wanted, when, and the pending timer. */
  #ours: Record<ReceiptKind, Receipt> = { seen: newReceipt(), delivered: newReceipt() };
  /** Who is typing, with the timer that expires it. */
  #typers = new Map<string, { role: Role; timer: ReturnType<typeof setTimeout> }>();
  /** Highest receipt seq of each kind per participant. */
  #theirs: Record<ReceiptKind, Map<string, number>> = { seen: new Map(), delivered: new Map() };
  #nonces = new Map<string, number>();

  constructor(deps: SignalDeps) {
    this.#d = deps;
  }

  #connected(): boolean {
    return this.#d.conn.state === 'connected';
  }

  /** Says we are typing (throttled; stops by itself when idle) or stopped. Never throws. */
  typing(state: 'start' | 'stop'): void {
    const { id } = this.#d.session();
    if (!id || !SIGNAL_ROLES.typing.has(id.role)) return;
    clearTimeout(this.#idleTimer);
    if (state === 'start') {
      this.#idleTimer = setTimeout(() => this.typing('stop'), TYPING_IDLE_MS);
      const now = this.#d.now();
      if (this.#typingOn && now - this.#typingSentAt < SIGNAL_LIMITS.typingThrottleMs) return;
      this.#typingOn = true;
      this.#typingSentAt = now;
      void this.#send({ kind: 'typing', state: 'start', sentAt: now });
      return;
    }
    if (!this.#typingOn) return;
    this.#typingOn = false;
    this.#typingSentAt = Number.NEGATIVE_INFINITY;
    void this.#send({ kind: 'typing', state: 'stop', sentAt: this.#d.now() });
  }

  /**
   * Says we have read (`seen`) or received (`delivered`) every message up to `seq` (monotonic,
   * throttled). Never throws.
   */
  receipt(kind: ReceiptKind, seq: number): void {
    const r = this.#ours[kind];
    if (!Number.isSafeInteger(seq) || seq <= r.wanted) return;
    r.wanted = seq;
    if (r.timer !== undefined) return;
    const wait = r.at + SEEN_THROTTLE_MS - this.#d.now();
    if (wait <= 0) this.#flush(kind);
    else r.timer = setTimeout(() => this.#flush(kind), wait);
  }

  close(): void {
    clearTimeout(this.#idleTimer);
    for (const r of Object.values(this.#ours)) clearTimeout(r.timer);
    for (const t of this.#typers.values()) clearTimeout(t.timer);
    this.#typers.clear();
  }

  #flush(kind: ReceiptKind): void {
    const r = this.#ours[kind];
    r.timer = undefined;
    const seq = r.wanted;
    if (seq <= r.sent) return;
    const { id } = this.#d.session();
    if (!id || !SIGNAL_ROLES[kind].has(id.role)) return;
    if (!this.#connected()) {
      // tried again until the connection is back
      r.timer = setTimeout(() => this.#flush(kind), SEEN_THROTTLE_MS);
      return;
    }
    r.sent = seq;
    r.at = this.#d.now();
    void this.#send({ kind, seq, sentAt: r.at });
  }

  async #send(body: SignalBody): Promise<void> {
    const { id, keys } = this.#d.session();
    if (!id || !keys?.cert || !this.#connected()) return;
    const epoch = keys.certBody?.epoch;
    const key = epoch === undefined ? undefined : keys.ring.key(epoch);
    if (epoch === undefined || !key) return;
    try {
      const s = await sealSignal({
        key,
        header: { contactId: id.contactId, epoch, senderId: id.participantId },
        plaintext: utf8Encode(JSON.stringify(body)),
        signingKey: keys.signingSecretKey,
      });
      const signal: SealedSignal = {
        epoch,
        nonce: toBase64Url(s.nonce),
        ciphertext: toBase64Url(s.ciphertext),
        sig: toBase64Url(s.sig),
        cert: keys.cert,
      };
      if (!this.#connected()) return;
      this.#d.conn.transmit({
        v: PROTOCOL_VERSION,
        type: 'signal',
        id: `sig${this.#nextId++}`,
        signal,
      });
    } catch {
      // a signal is best effort: nothing to retry
    }
  }

  /** A signal the relay forwarded from `from`: checked, then emitted; dropped otherwise. */
  receive(from: string, signal: SealedSignal): void {
    this.#open(from, signal).then(
      (ok) => {
        if (!ok) this.dropped++;
      },
      () => this.dropped++,
    );
  }

  async #open(from: string, signal: SealedSignal): Promise<boolean> {
    const { id, keys, serviceKey } = this.#d.session();
    if (!id || !keys || !serviceKey) return false;
    if (from === id.participantId) return true; // our own other connection: nothing to show
    const body = await signedBody(signal.cert, serviceKey);
    if (
      body.contactId !== id.contactId ||
      body.participantId !== from ||
      body.epoch !== signal.epoch
    )
      return false;
    // Only a key we hold: a relay must not make us fetch keys by naming epochs.
    const key = keys.ring.key(signal.epoch);
    if (!key) return false;
    const plaintext = await openSignal({
      key,
      header: { contactId: id.contactId, epoch: signal.epoch, senderId: from },
      nonce: fromBase64Url(signal.nonce),
      ciphertext: fromBase64Url(signal.ciphertext),
      sig: fromBase64Url(signal.sig),
      verifyKey: fromBase64Url(body.publicKey),
    });
    if (plaintext.length > SIGNAL_LIMITS.maxPlaintextBytes) return false;
    const parsed = SignalBody.safeParse(JSON.parse(utf8Decode(plaintext)));
    if (!parsed.success) return false;
    const s = parsed.data;
    const now = this.#d.now();
    if (Math.abs(now - s.sentAt) > SIGNAL_LIMITS.maxAgeMs) return false;
    if (s.sentAt > body.notAfter || s.sentAt + FRESHNESS.clockSkewMs < body.issuedAt) return false;
    if (!this.#fresh(signal.nonce, now)) return false;
    const role = body.role;
    if (s.kind === 'typing') {
      if (!SIGNAL_ROLES.typing.has(role)) return false;
      this.#typing(from, role, s.state);
      return true;
    }
    if (!SIGNAL_ROLES[s.kind].has(role)) return false;
    const theirs = this.#theirs[s.kind];
    if (s.seq <= (theirs.get(from) ?? 0)) return false;
    theirs.set(from, s.seq);
    this.#d.events.emit(s.kind, { participantId: from, role, seq: s.seq });
    return true;
  }

  /** False for a nonce already seen within the age window (a replay). */
  #fresh(nonce: string, now: number): boolean {
    if (this.#nonces.has(nonce)) return false;
    if (this.#nonces.size >= MAX_NONCES) {
      for (const [n, at] of this.#nonces) {
        if (now - at <= 2 * SIGNAL_LIMITS.maxAgeMs) break;
        this.#nonces.delete(n);
      }
      if (this.#nonces.size >= MAX_NONCES) return false;
    }
    this.#nonces.set(nonce, now);
    return true;
  }

  #typing(from: string, role: Role, state: 'start' | 'stop'): void {
    const had = this.#typers.get(from);
    if (had) clearTimeout(had.timer);
    if (state === 'stop') {
      this.#typers.delete(from);
      if (had) this.#d.events.emit('typing', { participantId: from, role, state: 'stop' });
      return;
    }
    const timer = setTimeout(() => {
      this.#typers.delete(from);
      this.#d.events.emit('typing', { participantId: from, role, state: 'stop' });
    }, SIGNAL_LIMITS.typingExpiryMs);
    this.#typers.set(from, { role, timer });
    if (!had) this.#d.events.emit('typing', { participantId: from, role, state: 'start' });
  }
}
