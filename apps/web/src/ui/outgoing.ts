/**
 * Own messages on their way (conversation.ts, docs/web.md "Offline and reload"): typed before a
 * client is ready (queued, sent once one is), sent and waiting for their seq (pending, by the
 * msgId chosen here, so that the ack, the `message` event and an outbox copy restored after a
 * reload all meet on one list item), and failed, with a Retry button that sends the text again
 * as a new message. A send the client could not seal for want of a fresh epoch statement while
 * cut off waits, still sending, for the next connection.
 */
import type { LatchkeyClient, OutboxStore, PendingMessage } from '@latchkey/client';
import { toBase64Url } from '@latchkey/crypto/codec';
import { LatchkeyError, type Role } from '@latchkey/protocol';
import { h } from './dom.ts';
import type { MessageList } from './message-list.ts';

/** What sending uses of a client. */
export type SendingClient = Pick<LatchkeyClient, 'send' | 'contactId' | 'state'>;

export interface PendingSend {
  el: HTMLLIElement;
  text: string;
  msgId: string;
  /** Set once handed to a client: where its outbox record lives. */
  contactId?: string;
}

export interface OutgoingDeps {
  list: MessageList;
  /** The client of the current connection attempt, if any. */
  client(): SendingClient | null;
  /** Who we are, once a client has been ready. */
  self(): { id: string; role: Role } | null;
  /** The conversation was closed for good. */
  closed(): boolean;
  outbox: OutboxStore | undefined;
}

/** A fresh message id: 16 random bytes, base64url (the client's own format). */
function newMsgId(): string {
  return toBase64Url(crypto.getRandomValues(new Uint8Array(16)));
}

export class Outgoing {
  readonly #d: OutgoingDeps;
  /** Sent (or restored from the outbox) and waiting for their seq, by msgId, oldest first. */
  #pending = new Map<string, PendingSend>();
  /** Shown as failed with a Retry button, by msgId. */
  #failed = new Map<string, PendingSend>();
  /** Typed before a connection exists; sent once one does. */
  #queued: PendingSend[] = [];

  constructor(deps: OutgoingDeps) {
    this.#d = deps;
  }

  /**
   * The item an own message was sent or restored as, no longer waiting (a failed one loses its
   * Retry button); null when it is not on screen.
   */
  take(msgId: string): PendingSend | null {
    const entry = this.#pending.get(msgId) ?? this.#unfail(msgId);
    if (entry) this.#pending.delete(msgId);
    return entry;
  }

  /** Shows an own message as sending and sends it, now or once a client is ready. */
  send(text: string): void {
    const el = this.#d.list.item({
      own: true,
      text,
      sender: this.#d.self()?.id ?? 'you',
      role: this.#d.self()?.role ?? null,
      sentAt: Date.now(),
    });
    this.#d.list.setState(el, 'sending');
    this.#d.list.append(el);
    this.#d.list.scroll(true);
    const entry: PendingSend = { el, text, msgId: newMsgId() };
    const client = this.#d.client();
    // Only a client that has been ready knows who it is and can seal; a fresh one still
    // connecting (or one that failed to) gets the message when it is ready.
    if (
      !client ||
      this.#d.self() === null ||
      (client.state !== 'connected' && client.state !== 'reconnecting')
    ) {
      this.#queued.push(entry);
      return;
    }
    this.#dispatch(client, entry);
  }

  /** Sends what was typed while no client was ready (or waited for a fresh statement). */
  flush(): void {
    const client = this.#d.client();
    if (!client) return;
    const queued = this.#queued;
    this.#queued = [];
    for (const entry of queued) this.#dispatch(client, entry);
  }

  #dispatch(client: SendingClient, entry: PendingSend): void {
    this.#pending.set(entry.msgId, entry);
    entry.contactId = client.contactId;
    client.send(entry.text, { msgId: entry.msgId }).then(
      (r) => {
        if (this.#pending.get(entry.msgId) !== entry) return; // already settled by the message event
        this.#pending.delete(entry.msgId);
        this.#d.list.settle(entry.el, r.seq, null);
      },
      (err: unknown) => {
        if (this.#pending.get(entry.msgId) !== entry) return;
        this.#pending.delete(entry.msgId);
        // Not sealed because the client, cut off, has no fresh epoch statement (it never seals
        // under a stale one): it waits, still sending, for the next connection.
        if (
          !this.#d.closed() &&
          LatchkeyError.is(err, 'KEY_UNAVAILABLE') &&
          client.state !== 'connected'
        ) {
          this.#queued.push(entry);
          return;
        }
        // Failed is final until Retry (a new message): a later session must not also send this
        // one from the outbox. Closing the widget is not a failure: its records stay.
        if (!this.#d.closed() && entry.contactId !== undefined) {
          void this.#d.outbox?.delete(entry.contactId, entry.msgId).catch(() => undefined);
        }
        this.#fail(entry);
      },
    );
  }

  #fail(entry: PendingSend): void {
    this.#failed.set(entry.msgId, entry);
    this.#d.list.setState(entry.el, 'failed');
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
      this.send(entry.text);
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
  restored(p: PendingMessage): void {
    if (this.#pending.has(p.msgId) || this.#d.closed()) return;
    const failed = this.#unfail(p.msgId);
    const el =
      failed?.el ??
      this.#d.list.item({
        own: true,
        // A file message without caption carries no text: it gets its card once stored.
        text: p.text === '' ? 'Sending a file…' : p.text,
        sender: this.#d.self()?.id ?? 'you',
        role: this.#d.self()?.role ?? null,
        sentAt: p.sentAt,
      });
    this.#d.list.setState(el, 'sending');
    if (!failed) {
      this.#d.list.append(el);
      this.#d.list.scroll(true);
    }
    this.#pending.set(p.msgId, { el, text: p.text, msgId: p.msgId });
  }
}
