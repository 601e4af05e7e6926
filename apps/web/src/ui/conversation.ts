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
 *
 * A file message is drawn as a file card and a scanner's verdict updates one instead of being
 * drawn (conversation-files.ts, docs/web.md "Attachments").
 *
 * Its parts: conversation-header.ts (title, status, badge), message-list.ts (drawing messages in
 * seq order), composer.ts (the text box), outgoing.ts (own messages on their way),
 * conversation-files.ts (attachments), typing.ts and receipts.ts (typing indicator, `data-receipt`
 * on own messages); here the connection loop and what arrives.
 */
import {
  LatchkeyClient,
  type ChatMessage,
  type ClientOptions,
  type ConnectionState,
  type FailedMessage,
  type OutboxStore,
  type TranscriptCheckpoint,
} from '@latchkey/client';
import { LatchkeyError, SENDING_ROLES, backoffDelay, type Role } from '@latchkey/protocol';
import { Composer } from './composer.ts';
import { ConversationFiles } from './conversation-files.ts';
import { ConversationHeader, type StatusName } from './conversation-header.ts';
import { h } from './dom.ts';
import { MessageList, integrityName, type IntegrityName } from './message-list.ts';
import { Outgoing } from './outgoing.ts';
import { SignalsView, type SignalClient } from './receipts.ts';
import type { SessionInfo } from './session.ts';

export type { StatusName } from './conversation-header.ts';

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
  | 'sendFile'
  | 'openFile'
  | 'thumbnail'
  | 'history'
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

export class Conversation {
  readonly root: HTMLElement;
  readonly participants = new Map<string, Role>();
  #opts: ConversationOptions;
  #header: ConversationHeader;
  #list = new MessageList();
  #composer: Composer;
  #outgoing: Outgoing;
  #files: ConversationFiles;
  #signals: SignalsView;

  #client: ConversationClient | null = null;
  #clientState: ConnectionState = 'idle';
  #online = typeof navigator === 'undefined' ? true : navigator.onLine;
  #closed = false;
  #lastSeq = 0;
  /** The transcript checkpoint of the last client, so its successor goes on checking from there. */
  #checkpoint: TranscriptCheckpoint | null = null;
  #self: { id: string; role: Role } | null = null;
  #wake: (() => void) | null = null;
  #unlisten: (() => void)[] = [];

  constructor(opts: ConversationOptions) {
    this.#opts = opts;
    this.#header = new ConversationHeader(opts.title);
    this.#composer = new Composer(this.#header.fingerprintId, () => this.#submit());
    this.#outgoing = new Outgoing({
      list: this.#list,
      client: () => this.#client,
      self: () => this.#self,
      closed: () => this.#closed,
      outbox: opts.outbox,
    });
    this.#files = new ConversationFiles(() => this.#client);
    const signalClient = (): SignalClient | null => this.#client as SignalClient | null;
    this.#signals = new SignalsView(this.#list.root, signalClient, () => this.#self?.id ?? null);
    this.#list.receiptOf = (seq) => this.#signals.receipts.of(seq);
    this.#composer.onInput((text) => this.#signals.input(text));
    this.#composer.addTool(this.#files.attachments.button);
    this.#composer.addTool(this.#files.attachments.input);
    this.root = h(
      'section',
      { class: 'lk-conv', 'aria-label': opts.title },
      this.#header.root,
      this.#list.root,
      this.#signals.typing.root,
      this.#files.uploads.root,
      this.#composer.root,
    );
    this.#files.bind(this.root);
  }

  /** The content key's fingerprint once connected, else null. */
  get fingerprint(): string | null {
    return this.#header.fingerprint;
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
    this.#unlisten.push(this.#signals.listen());
    void this.#run();
  }

  /** Stops for good: closes the connection and disables the composer. */
  close(): void {
    this.#closed = true;
    for (const u of this.#unlisten) u();
    this.#client?.close();
    this.#client = null;
    this.#wake?.();
    this.#composer.disable();
    this.#files.disable();
    this.#files.dispose();
  }

  focus(): void {
    this.#composer.focus();
  }

  // --- connection ------------------------------------------------------------------------

  async #run(): Promise<void> {
    let renew = false;
    let attempt = 0;
    while (!this.#closed) {
      let fatal: unknown = null;
      try {
        const session = await this.#opts.getSession(renew);
        renew = false;
        if (this.#closed) return;
        for (const p of session.participants ?? []) this.#addParticipant(p.id, p.role);
        this.#files.scanning = session.scanning === true;
        const clientOptions: ClientOptions = {
          relayUrl: session.relayUrl,
          keysUrl: session.keysUrl,
          token: session.token,
          serviceKey: session.serviceKey,
          since: this.#lastSeq,
          ...(this.#checkpoint?.seq === this.#lastSeq ? { checkpoint: this.#checkpoint } : {}),
          backoff: { minMs: 250, maxMs: 3000 },
          scanning: session.scanning === true,
          // Called bound: the file API's requests call `fetch` as a method of another object,
          // which a browser's window.fetch refuses ("Illegal invocation").
          fetch: (input, init) => fetch(input, init),
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
              this.#outgoing.flush();
            if (s === 'closed') {
              this.#checkpoint =
                (client as Partial<Pick<LatchkeyClient, 'checkpoint'>>).checkpoint?.() ?? null;
              resolve();
            }
          });
        });
        client.on('pending', (p) => this.#outgoing.restored(p));
        client.on('message', (m) => this.#onMessage(m));
        client.on('failed', (f) => this.#onFailed(f));
        client.on('scan', (u) => this.#files.onScan(u));
        this.#signals.bind(client as SignalClient);
        client.on('epoch', (e) => {
          if (this.#client === client) this.#header.showFingerprint(e.fingerprint, e.epoch);
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
        attempt = 0;
        this.#self = { id: client.participantId, role: client.role };
        this.#addParticipant(client.participantId, client.role);
        this.#refreshFingerprint(client);
        if (!SENDING_ROLES.has(client.role)) {
          // A supervisor reads only; the relay would refuse its sends anyway.
          this.#composer.disable(`A ${client.role} can read but not send`);
          this.#files.disable();
        }
        this.#outgoing.flush();
        await closed;
      } catch (err) {
        fatal = err;
      }
      if (this.#closed) return;
      this.#client = null;
      this.#setClientState('reconnecting');
      if (LatchkeyError.is(fatal, 'AUTH_EXPIRED') || LatchkeyError.is(fatal, 'AUTH_INVALID'))
        renew = true;
      await this.#sleep(backoffDelay(attempt++, { baseMs: 500, maxMs: 10_000 }));
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
    this.#header.showStatus(status);
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
    this.#header.showFingerprint(fp, epoch);
  }

  #addParticipant(id: string, role: Role): void {
    if (this.participants.get(id) === role) return;
    this.participants.set(id, role);
    this.#opts.onParticipants?.(this.participants);
  }

  // --- sending ---------------------------------------------------------------------------

  #submit(): void {
    const text = this.#composer.text();
    if (text.length === 0 || this.#closed) return;
    this.#composer.clear();
    this.#signals.sent();
    this.#outgoing.send(text);
  }

  // --- receiving -------------------------------------------------------------------------

  #onMessage(m: ChatMessage): void {
    this.#lastSeq = Math.max(this.#lastSeq, m.seq);
    this.#addParticipant(m.senderId, m.senderRole);
    if (typeof m.epoch === 'number' && m.epoch > this.#header.epoch && this.#client)
      this.#refreshFingerprint(this.#client);
    if (this.#list.has(m.seq) || this.#files.consumeVerdict(m)) return;
    const fileBody = this.#files.body(m);
    // An own file restored from the outbox after a reload was shown as sending without its card.
    if (fileBody && m.own) this.#outgoing.take(m.msgId)?.el.remove();
    if (m.own && !fileBody) {
      // The item this message was sent (or restored) as, if it is on screen.
      const entry = this.#outgoing.take(m.msgId);
      if (entry) {
        this.#list.settle(entry.el, m.seq, m.sentAt);
        this.#opts.onActivity?.({ seq: m.seq, sentAt: m.sentAt, own: true });
        return;
      }
    }
    const el = this.#list.item({
      own: m.own,
      text: m.text,
      sender: m.senderId,
      role: m.senderRole,
      sentAt: m.sentAt,
      ...(fileBody ? { body: fileBody } : {}),
    });
    this.#list.settle(el, m.seq, m.sentAt);
    this.#list.scroll(m.own);
    if (!m.own) this.#signals.received(m.seq);
    this.#opts.onActivity?.({ seq: m.seq, sentAt: m.sentAt, own: m.own });
  }

  #onFailed(f: FailedMessage): void {
    this.#lastSeq = Math.max(this.#lastSeq, f.seq);
    if (this.#list.has(f.seq)) return;
    const check = f.code === 'INTEGRITY' ? integrityName(f.integrity) : null;
    if (f.code === 'INTEGRITY') {
      this.#onSuspect(f, check);
      return;
    }
    this.#list.showUndecryptable(f, f.senderId === this.#self?.id);
    this.#list.scroll(false);
    this.#opts.onActivity?.({ seq: f.seq, sentAt: null, own: false });
  }

  /**
   * A message that failed a transcript or membership check: a suspect element with the check's
   * code and a warning; its text (never for REPLAYED) only inside the marked block; for MISSING
   * one gap element before it.
   */
  #onSuspect(f: FailedMessage, check: IntegrityName | null): void {
    const own = f.senderId === this.#self?.id;
    this.#list.showSuspect(f, check, own, this.participants.get(f.senderId) ?? null);
    this.#list.scroll(false);
    this.#opts.onActivity?.({ seq: f.seq, sentAt: f.sentAt ?? null, own: false });
  }
}
