/**
 * One conversation on screen: connection status, the "end-to-end encrypted" badge with the
 * content key's fingerprint, the messages in seq order with their delivery state, and a
 * composer that sends on Enter. Shared by the visitor widget and the agent console; all the
 * crypto is @latchkey/client's (the same code as in Node), this file only draws.
 *
 * Message states (`data-state`): `sending` (sealed, waiting for the relay's ack), `delivered`
 * (stored by the relay, has `data-seq`), `failed` (the send was refused or the connection gave
 * up; a Retry button sends it again), `undecryptable` (a stored message that failed to open:
 * shown as "Could not decrypt this message", never its bytes) and `suspect` (it opened but failed
 * a transcript or membership check: `data-integrity` names the check, a warning says so, and its
 * text, if any, is shown only inside the marked warning; a MISSING one has one `gap` element
 * before it). A REPLAYED duplicate is only ever that suspect element, never a second message.
 *
 * Message text and sender names are bidi-isolated (`dir="auto"`, `<bdi>`, `unicode-bidi:
 * isolate`), and explicit directional controls in a message show as visible marks instead of
 * acting (bidi.ts): a U+202E reorders neither the message nor the UI around it.
 *
 * The "end-to-end encrypted" badge shows the fingerprint of the client's current epoch and
 * follows it (`epoch` event, or a message of a newer epoch), `data-epoch` naming it.
 *
 * Every own message carries a msgId chosen here (`send(text, { msgId })`), so a send, its ack,
 * its `message` event and a copy restored from a persistent outbox after a reload (`pending`
 * event) all meet on one list item: none is shown twice (docs/web.md "Offline and reload").
 */
import {
  LatchkeyClient,
  type ChatMessage,
  type ClientOptions,
  type ConnectionState,
  type FailedMessage,
  type OutboxStore,
  type PendingMessage,
  type TranscriptCheckpoint,
} from '@latchkey/client';
import { toBase64Url } from '@latchkey/crypto/codec';
import { LatchkeyError, SENDING_ROLES, type Role } from '@latchkey/protocol';
import { bidiSafeText } from './bidi.ts';
import { clock, h, setText, uid } from './dom.ts';
import type { SessionInfo } from './session.ts';

export type StatusName = 'connecting' | 'connected' | 'reconnecting' | 'offline';

/** What the conversation uses of a client: the @latchkey/client facade. */
export type ConversationClient = Pick<
  LatchkeyClient,
  | 'on'
  | 'connect'
  | 'close'
  | 'send'
  | 'fingerprint'
  | 'epoch'
  | 'state'
  | 'participantId'
  | 'role'
  | 'contactId'
>;

export interface ConversationOptions {
  /** Heading shown above the messages. */
  title: string;
  /** Fetches a session; `renew` asks for a fresh token (the last one expired or was refused). */
  getSession(renew: boolean): Promise<SessionInfo>;
  /** Called for every message that arrives (own ones included), after it is shown. */
  onActivity?(entry: { seq: number; sentAt: number | null; own: boolean }): void;
  /** Called when the set of known participants changes. */
  onParticipants?(participants: ReadonlyMap<string, Role>): void;
  /**
   * Where unacknowledged sealed envelopes wait (default: the client's in-memory outbox). With a
   * persistent store (`IndexedDbOutbox`) messages still sending survive a reload and go out once.
   */
  outbox?: OutboxStore;
  /** Makes the client of each connection attempt (default `new LatchkeyClient(opts)`; tests give a fake). */
  createClient?(opts: ClientOptions): ConversationClient;
}

interface PendingSend {
  el: HTMLLIElement;
  text: string;
  msgId: string;
  /** Set once handed to a client: where its outbox record lives. */
  contactId?: string;
}

/** A fresh message id: 16 random bytes, base64url (the client's own format). */
function newMsgId(): string {
  return toBase64Url(crypto.getRandomValues(new Uint8Array(16)));
}

const STATUS_TEXT: Record<StatusName, string> = {
  connecting: 'Connecting…',
  connected: 'Connected',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
};

const STATE_TEXT = { sending: 'Sending…', delivered: 'Delivered', failed: 'Not sent' } as const;

/** The integrity checks of the client (`FailedMessage.integrity`), as the warning names them. */
const INTEGRITY_TEXT = {
  REPLAYED: ['replayed', 'a copy of a message that was already delivered.'],
  REORDERED: ['reordered', 'it arrived out of the order in which it was sent.'],
  MISSING: ['messages missing', 'earlier messages of this sender are missing.'],
  FORKED: ['forked history', 'the history shown here differs from what the sender saw.'],
  STALE_EPOCH: ['stale key', 'it was sealed with an outdated key after the key had changed.'],
  SENDER_REMOVED: ['sender removed', 'it is signed by a participant who had already been removed.'],
  CLOCK: ['clock', 'its send time is implausible (too far in the future or going backwards).'],
} as const;
type IntegrityName = keyof typeof INTEGRITY_TEXT;

function integrityName(code: unknown): IntegrityName | null {
  return typeof code === 'string' && Object.hasOwn(INTEGRITY_TEXT, code)
    ? (code as IntegrityName)
    : null;
}

/** A small padlock (SVG, no emoji font needed), hidden from screen readers. */
function lockIcon(): SVGSVGElement {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 16 16');
  svg.setAttribute('width', '14');
  svg.setAttribute('height', '14');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'lk-lock');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('fill', 'currentColor');
  path.setAttribute('d', 'M4 7V5a4 4 0 1 1 8 0v2h1v8H3V7h1zm2 0h4V5a2 2 0 1 0-4 0v2z');
  svg.append(path);
  return svg;
}

export class Conversation {
  readonly root: HTMLElement;
  readonly participants = new Map<string, Role>();
  #opts: ConversationOptions;
  #status: HTMLElement;
  #fingerprint: HTMLElement;
  #fpText: HTMLElement;
  #list: HTMLOListElement;
  #empty: HTMLElement;
  #input: HTMLTextAreaElement;
  #sendButton: HTMLButtonElement;

  #client: ConversationClient | null = null;
  #clientState: ConnectionState = 'idle';
  #online = typeof navigator === 'undefined' ? true : navigator.onLine;
  #closed = false;
  #lastSeq = 0;
  /** The transcript checkpoint of the last client, so its successor goes on checking from there. */
  #checkpoint: TranscriptCheckpoint | null = null;
  #shown = new Map<number, HTMLLIElement>();
  /** The `gap` element shown before a message (MISSING), moved with it. */
  #gaps = new WeakMap<HTMLElement, HTMLElement>();
  /** The epoch whose fingerprint the badge shows (-1: none yet). */
  #epoch = -1;
  /** Sent (or restored from the outbox) and waiting for their seq, by msgId, oldest first. */
  #pending = new Map<string, PendingSend>();
  /** Shown as failed with a Retry button, by msgId. */
  #failed = new Map<string, PendingSend>();
  /** Typed before a connection exists; sent once one does. */
  #queued: PendingSend[] = [];
  #self: { id: string; role: Role } | null = null;
  #wake: (() => void) | null = null;
  #unlisten: (() => void)[] = [];

  constructor(opts: ConversationOptions) {
    this.#opts = opts;
    const inputId = uid('lk-input');
    const fpId = uid('lk-fp');
    this.#status = h(
      'span',
      {
        class: 'lk-status',
        role: 'status',
        'data-testid': 'connection-status',
        'data-status': 'connecting',
      },
      STATUS_TEXT.connecting,
    );
    this.#fpText = h('span', { class: 'lk-fp', id: fpId }, '…');
    this.#fingerprint = h(
      'p',
      {
        class: 'lk-e2e',
        'data-testid': 'e2e-fingerprint',
        'data-fingerprint': '',
        title:
          'Compare this key fingerprint with the other side: the same value means the same key.',
      },
      lockIcon(),
      h('strong', {}, 'End-to-end encrypted'),
      h('span', {}, '· key fingerprint'),
      this.#fpText,
    );
    this.#empty = h('li', { class: 'lk-empty' }, 'No messages yet.');
    this.#list = h(
      'ol',
      {
        class: 'lk-messages',
        role: 'log',
        'aria-live': 'polite',
        'aria-label': 'Messages',
        tabindex: 0,
      },
      this.#empty,
    );
    this.#input = h('textarea', {
      class: 'lk-input',
      id: inputId,
      rows: 2,
      'data-testid': 'composer',
      placeholder: 'Type a message, Enter to send',
      'aria-describedby': fpId,
      maxlength: 8000,
    });
    this.#sendButton = h(
      'button',
      { class: 'lk-btn', type: 'submit', 'data-testid': 'send' },
      'Send',
    );
    const form = h(
      'form',
      { class: 'lk-composer', 'aria-label': 'Send a message' },
      h('label', { class: 'lk-sr', for: inputId }, 'Message'),
      this.#input,
      this.#sendButton,
    );
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.#submit();
    });
    this.#input.addEventListener('keydown', (ev) => {
      // Enter sends, Shift+Enter breaks the line; never while an IME is composing.
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        this.#submit();
      }
    });
    this.root = h(
      'section',
      { class: 'lk-conv', 'aria-label': opts.title },
      h(
        'header',
        { class: 'lk-head' },
        h('h2', { class: 'lk-title' }, opts.title),
        this.#status,
        this.#fingerprint,
      ),
      this.#list,
      form,
    );
  }

  /** The content key's fingerprint once connected, else null. */
  get fingerprint(): string | null {
    return this.#fingerprint.dataset.fingerprint || null;
  }

  /** Starts connecting (and keeps reconnecting until close()). */
  start(): void {
    const onOnline = (): void => {
      this.#online = true;
      this.#renderStatus();
      this.#wake?.();
    };
    const onOffline = (): void => {
      this.#online = false;
      this.#renderStatus();
    };
    window.addEventListener('online', onOnline);
    window.addEventListener('offline', onOffline);
    this.#unlisten.push(() => window.removeEventListener('online', onOnline));
    this.#unlisten.push(() => window.removeEventListener('offline', onOffline));
    void this.#run();
  }

  /** Stops for good: closes the connection and disables the composer. */
  close(): void {
    this.#closed = true;
    for (const u of this.#unlisten) u();
    this.#client?.close();
    this.#client = null;
    this.#wake?.();
    this.#input.disabled = true;
    this.#sendButton.disabled = true;
  }

  focus(): void {
    this.#input.focus();
  }

  // --- connection ------------------------------------------------------------------------

  async #run(): Promise<void> {
    let renew = false;
    let delay = 500;
    while (!this.#closed) {
      let fatal: unknown = null;
      try {
        const session = await this.#opts.getSession(renew);
        renew = false;
        if (this.#closed) return;
        for (const p of session.participants ?? []) this.#addParticipant(p.id, p.role);
        const clientOptions: ClientOptions = {
          relayUrl: session.relayUrl,
          keysUrl: session.keysUrl,
          token: session.token,
          serviceKey: session.serviceKey,
          since: this.#lastSeq,
          ...(this.#checkpoint?.seq === this.#lastSeq ? { checkpoint: this.#checkpoint } : {}),
          backoff: { minMs: 250, maxMs: 3000 },
          ...(this.#opts.outbox ? { outbox: this.#opts.outbox } : {}),
        };
        const client = this.#opts.createClient
          ? this.#opts.createClient(clientOptions)
          : new LatchkeyClient(clientOptions);
        const closed = new Promise<void>((resolve) => {
          client.on('state', (s) => {
            if (this.#client === client || this.#client === null) this.#setClientState(s);
            // Back after a cut: what waited for a fresh statement goes out now, in order.
            if (s === 'connected' && this.#client === client && this.#self !== null)
              this.#flushQueue();
            if (s === 'closed') {
              this.#checkpoint =
                (client as Partial<Pick<LatchkeyClient, 'checkpoint'>>).checkpoint?.() ?? null;
              resolve();
            }
          });
        });
        client.on('pending', (p) => this.#onPending(p));
        client.on('message', (m) => this.#onMessage(m));
        client.on('failed', (f) => this.#onFailed(f));
        client.on('epoch', (e) => {
          if (this.#client === client) this.#showFingerprint(e.fingerprint, e.epoch);
        });
        client.on('error', (e) => {
          fatal = e;
        });
        this.#client = client;
        await client.connect();
        if (this.#closed) {
          client.close();
          return;
        }
        delay = 500;
        this.#self = { id: client.participantId, role: client.role };
        this.#addParticipant(client.participantId, client.role);
        this.#refreshFingerprint(client);
        if (!SENDING_ROLES.has(client.role)) {
          // A supervisor reads only; the relay would refuse its sends anyway.
          this.#input.disabled = true;
          this.#sendButton.disabled = true;
          this.#input.placeholder = `A ${client.role} can read but not send`;
        }
        this.#flushQueue();
        await closed;
      } catch (err) {
        fatal = err;
      }
      if (this.#closed) return;
      this.#client = null;
      this.#setClientState('reconnecting');
      if (LatchkeyError.is(fatal, 'AUTH_EXPIRED') || LatchkeyError.is(fatal, 'AUTH_INVALID'))
        renew = true;
      await this.#sleep(delay);
      delay = Math.min(delay * 2, 10_000);
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = () => {
        this.#wake = null;
        done();
      };
    });
  }

  #setClientState(s: ConnectionState): void {
    this.#clientState = s;
    this.#renderStatus();
  }

  #renderStatus(): void {
    let status: StatusName;
    if (!this.#online) status = 'offline';
    else if (this.#clientState === 'connected') status = 'connected';
    else if (this.#clientState === 'reconnecting' || this.#clientState === 'closed')
      status = 'reconnecting';
    else status = 'connecting';
    if (this.#status.dataset.status === status) return;
    this.#status.dataset.status = status;
    setText(this.#status, STATUS_TEXT[status]);
  }

  /**
   * Shows the fingerprint of `epoch`, unless the badge already shows a newer one (an old epoch
   * never takes it back).
   */
  #showFingerprint(fp: string, epoch: number): void {
    if (epoch < this.#epoch) return;
    this.#epoch = epoch;
    this.#fingerprint.dataset.fingerprint = fp;
    this.#fingerprint.dataset.epoch = String(epoch);
    setText(this.#fpText, fp);
  }

  /** Shows the client's current epoch and fingerprint (after connecting, or a message of a newer epoch). */
  #refreshFingerprint(client: ConversationClient): void {
    let fp: string;
    let epoch: number;
    try {
      fp = client.fingerprint();
      epoch = client.epoch;
    } catch {
      return; // not connected (any more): the next connection shows it
    }
    this.#showFingerprint(fp, epoch);
  }

  #addParticipant(id: string, role: Role): void {
    if (this.participants.get(id) === role) return;
    this.participants.set(id, role);
    this.#opts.onParticipants?.(this.participants);
  }

  // --- sending ---------------------------------------------------------------------------

  #submit(): void {
    const text = this.#input.value.replace(/^\s+|\s+$/g, '');
    if (text.length === 0 || this.#closed) return;
    this.#input.value = '';
    this.#send(text);
  }

  #send(text: string): void {
    const el = this.#renderItem({
      own: true,
      text,
      sender: this.#self?.id ?? 'you',
      role: this.#self?.role ?? null,
      sentAt: Date.now(),
    });
    this.#setState(el, 'sending');
    this.#list.append(el);
    this.#scroll(true);
    const entry: PendingSend = { el, text, msgId: newMsgId() };
    const client = this.#client;
    // Only a client that has been ready knows who it is and can seal; a fresh one still
    // connecting (or one that failed to) gets the message when it is ready.
    if (
      !client ||
      this.#self === null ||
      (client.state !== 'connected' && client.state !== 'reconnecting')
    ) {
      this.#queued.push(entry);
      return;
    }
    this.#dispatch(client, entry);
  }

  #flushQueue(): void {
    const client = this.#client;
    if (!client) return;
    const queued = this.#queued;
    this.#queued = [];
    for (const entry of queued) this.#dispatch(client, entry);
  }

  #dispatch(client: ConversationClient, entry: PendingSend): void {
    this.#pending.set(entry.msgId, entry);
    entry.contactId = client.contactId;
    client.send(entry.text, { msgId: entry.msgId }).then(
      (r) => {
        if (this.#pending.get(entry.msgId) !== entry) return; // already settled by the message event
        this.#pending.delete(entry.msgId);
        this.#settle(entry.el, r.seq, null);
      },
      (err: unknown) => {
        if (this.#pending.get(entry.msgId) !== entry) return;
        this.#pending.delete(entry.msgId);
        // Not sealed because the client, cut off, has no fresh epoch statement (it never seals
        // under a stale one): it waits, still sending, for the next connection.
        if (
          !this.#closed &&
          LatchkeyError.is(err, 'KEY_UNAVAILABLE') &&
          client.state !== 'connected'
        ) {
          this.#queued.push(entry);
          return;
        }
        // Failed is final until Retry (a new message): a later session must not also send this
        // one from the outbox. Closing the widget is not a failure: its records stay.
        if (!this.#closed && entry.contactId !== undefined) {
          void this.#opts.outbox?.delete(entry.contactId, entry.msgId).catch(() => undefined);
        }
        this.#fail(entry);
      },
    );
  }

  #fail(entry: PendingSend): void {
    this.#failed.set(entry.msgId, entry);
    this.#setState(entry.el, 'failed');
    const retry = h(
      'button',
      {
        type: 'button',
        class: 'lk-retry',
        'data-testid': 'retry',
        'aria-label': 'Retry sending this message',
      },
      'Retry',
    );
    retry.addEventListener('click', () => {
      if (this.#failed.get(entry.msgId) !== entry) return;
      this.#failed.delete(entry.msgId);
      entry.el.remove();
      this.#send(entry.text);
    });
    entry.el.querySelector('.lk-meta')?.append(retry);
  }

  /** A failed item is sending (restored) or stored after all: it loses its Retry button. */
  #unfail(msgId: string): PendingSend | null {
    const entry = this.#failed.get(msgId);
    if (!entry) return null;
    this.#failed.delete(msgId);
    entry.el.querySelector('.lk-retry')?.remove();
    return entry;
  }

  /**
   * An own message an earlier session left in the outbox: the client sends it now. Shown as
   * sending once, however many connection attempts restore it again.
   */
  #onPending(p: PendingMessage): void {
    if (this.#pending.has(p.msgId) || this.#closed) return;
    const failed = this.#unfail(p.msgId);
    const el =
      failed?.el ??
      this.#renderItem({
        own: true,
        text: p.text,
        sender: this.#self?.id ?? 'you',
        role: this.#self?.role ?? null,
        sentAt: p.sentAt,
      });
    this.#setState(el, 'sending');
    if (!failed) {
      this.#list.append(el);
      this.#scroll(true);
    }
    this.#pending.set(p.msgId, { el, text: p.text, msgId: p.msgId });
  }

  /** An own message is stored at `seq`: mark it delivered and move it into seq order. */
  #settle(el: HTMLLIElement, seq: number, sentAt: number | null): void {
    const other = this.#shown.get(seq);
    if (other && other !== el) {
      el.remove();
      return;
    }
    el.dataset.seq = String(seq);
    if (sentAt !== null) this.#setTime(el, sentAt);
    this.#setState(el, 'delivered');
    this.#shown.set(seq, el);
    this.#place(el, seq);
  }

  // --- receiving -------------------------------------------------------------------------

  #onMessage(m: ChatMessage): void {
    this.#lastSeq = Math.max(this.#lastSeq, m.seq);
    this.#addParticipant(m.senderId, m.senderRole);
    if (typeof m.epoch === 'number' && m.epoch > this.#epoch && this.#client)
      this.#refreshFingerprint(this.#client);
    if (this.#shown.has(m.seq)) return;
    if (m.own) {
      // The item this message was sent (or restored) as, if it is on screen.
      const entry = this.#pending.get(m.msgId) ?? this.#unfail(m.msgId);
      if (entry) {
        this.#pending.delete(m.msgId);
        this.#settle(entry.el, m.seq, m.sentAt);
        this.#opts.onActivity?.({ seq: m.seq, sentAt: m.sentAt, own: true });
        return;
      }
    }
    const el = this.#renderItem({
      own: m.own,
      text: m.text,
      sender: m.senderId,
      role: m.senderRole,
      sentAt: m.sentAt,
    });
    this.#settle(el, m.seq, m.sentAt);
    this.#scroll(m.own);
    this.#opts.onActivity?.({ seq: m.seq, sentAt: m.sentAt, own: m.own });
  }

  #onFailed(f: FailedMessage): void {
    this.#lastSeq = Math.max(this.#lastSeq, f.seq);
    if (this.#shown.has(f.seq)) return;
    const check = f.code === 'INTEGRITY' ? integrityName(f.integrity) : null;
    if (f.code === 'INTEGRITY') {
      this.#onSuspect(f, check);
      return;
    }
    const el = this.#renderItem({
      own: f.senderId === this.#self?.id,
      text: null,
      sender: f.senderId,
      role: null,
      sentAt: null,
    });
    el.dataset.seq = String(f.seq);
    el.dataset.state = 'undecryptable';
    this.#shown.set(f.seq, el);
    this.#place(el, f.seq);
    this.#scroll(false);
    this.#opts.onActivity?.({ seq: f.seq, sentAt: null, own: false });
  }

  /**
   * A message that failed a transcript or membership check: a suspect element with the check's
   * code and a warning; its text (never for REPLAYED) only inside the marked block; for MISSING
   * one gap element before it.
   */
  #onSuspect(f: FailedMessage, check: IntegrityName | null): void {
    const own = f.senderId === this.#self?.id;
    const [name, why] = check
      ? INTEGRITY_TEXT[check]
      : (['unknown', 'it failed a check of this client.'] as const);
    const warningId = uid('lk-warn');
    const warning = h(
      'p',
      { class: 'lk-warning', id: warningId },
      h('strong', {}, `⚠ This message failed an integrity check: ${name}`),
      ` — ${why}`,
    );
    const el = this.#renderItem({
      own,
      text: null,
      sender: f.senderId,
      role: this.participants.get(f.senderId) ?? null,
      sentAt: f.sentAt ?? null,
      body: [warning],
    });
    if (typeof f.text === 'string' && check !== 'REPLAYED') {
      el.append(
        h(
          'blockquote',
          { class: 'lk-suspect-text' },
          h('span', { class: 'lk-suspect-label' }, 'Unverified text: '),
          h('span', { class: 'lk-suspect-body', dir: 'auto' }, ...bidiSafeText(f.text)),
        ),
      );
    }
    el.dataset.seq = String(f.seq);
    el.dataset.state = 'suspect';
    el.dataset.integrity = check ?? 'UNKNOWN';
    el.setAttribute('aria-describedby', warningId);
    if (check === 'MISSING') {
      const n =
        typeof f.missing === 'number' && Number.isSafeInteger(f.missing) && f.missing > 0
          ? f.missing
          : null;
      const text =
        n === null ? 'Messages missing' : `${n} ${n === 1 ? 'message' : 'messages'} missing`;
      this.#gaps.set(
        el,
        h(
          'li',
          { class: 'lk-gap', 'data-testid': 'gap', role: 'note', 'data-missing': n ?? '' },
          `${text} from ${f.senderId} before the next message`,
        ),
      );
    }
    this.#shown.set(f.seq, el);
    this.#place(el, f.seq);
    this.#scroll(false);
    this.#opts.onActivity?.({ seq: f.seq, sentAt: f.sentAt ?? null, own: false });
  }

  // --- drawing ---------------------------------------------------------------------------

  #renderItem(m: {
    own: boolean;
    text: string | null;
    sender: string;
    role: Role | null;
    sentAt: number | null;
    body?: HTMLElement[];
  }): HTMLLIElement {
    const who = m.own ? 'You' : m.role ? `${m.sender} (${m.role})` : m.sender;
    const time = h('time', { class: 'lk-time' });
    // The sender is isolated like the text: whatever it holds stays inside its own box.
    const meta = h('div', { class: 'lk-meta' }, h('bdi', { class: 'lk-sender' }, who), time);
    if (m.own) meta.append(h('span', { class: 'lk-state' }));
    const body = m.body ?? [
      m.text === null
        ? h('p', { class: 'lk-text' }, '⚠ Could not decrypt this message.')
        : h('p', { class: 'lk-text', dir: 'auto' }, ...bidiSafeText(m.text)),
    ];
    const el = h(
      'li',
      {
        class: 'lk-msg',
        'data-testid': 'message',
        'data-own': String(m.own),
        'data-sender': m.sender,
      },
      meta,
      ...body,
    );
    if (m.text === null && m.body === undefined)
      el.setAttribute('aria-label', `Message from ${m.sender} could not decrypt`);
    if (m.sentAt !== null) this.#setTime(el, m.sentAt);
    this.#empty.remove();
    return el;
  }

  #setTime(el: HTMLElement, sentAt: number): void {
    const t = el.querySelector('time');
    if (!t) return;
    t.dateTime = new Date(sentAt).toISOString();
    setText(t, clock(sentAt));
  }

  #setState(el: HTMLElement, state: 'sending' | 'delivered' | 'failed'): void {
    el.dataset.state = state;
    const label = el.querySelector<HTMLElement>('.lk-state');
    if (label) {
      label.dataset.state = state;
      setText(label, STATE_TEXT[state]);
    }
  }

  /**
   * Inserts `el` (and its gap, if any, right before it) before the first message with a higher
   * seq or still unsent, and before that message's own gap.
   */
  #place(el: HTMLLIElement, seq: number): void {
    let before: Element | null = null;
    for (const child of Array.from(this.#list.children)) {
      if (child === el || !(child instanceof HTMLElement) || child.dataset.testid !== 'message')
        continue;
      const s = child.dataset.seq;
      if (s === undefined || Number(s) > seq) {
        before = this.#gaps.get(child) ?? child;
        break;
      }
    }
    if (before) this.#list.insertBefore(el, before);
    else if (el.parentElement !== this.#list || el.nextElementSibling !== null)
      this.#list.append(el);
    const gap = this.#gaps.get(el);
    if (gap && el.previousElementSibling !== gap) this.#list.insertBefore(gap, el);
  }

  #scroll(force: boolean): void {
    const l = this.#list;
    if (force || l.scrollHeight - l.scrollTop - l.clientHeight < 120) l.scrollTop = l.scrollHeight;
  }
}
