/**
 * The attachments of one conversation (conversation.ts, docs/web.md "Attachments"): the Attach
 * button, drop and paste (attachments.ts) feed the uploads (uploads.ts); each file message is
 * drawn as a card (file-card.ts) whose preview and download go through the client of the current
 * connection (`thumbnail`, `openFile`, download.ts), and whose scan state follows the client's
 * `scan` events. A scanner's verdict message (checked by the client: only a sender certified as
 * `scanner` gets one through) is never drawn; it updates the card it names when its SHA-256
 * matches, `infected` sticking, as the client's own ledger does (so that a verdict still counts
 * when it reaches a client that did not see the file message itself).
 */
import type { ChatMessage, LatchkeyClient, ScanUpdate } from '@latchkey/client';
import { LatchkeyError, type ScanState } from '@latchkey/protocol';
import { Attachments } from './attachments.ts';
import { bidiSafeText } from './bidi.ts';
import { h } from './dom.ts';
import { downloadFile } from './download.ts';
import { FileCard } from './file-card.ts';
import { Uploads } from './uploads.ts';

/** What attachments use of a client. */
export type FilesClient = Pick<LatchkeyClient, 'sendFile' | 'openFile' | 'thumbnail' | 'history'>;

interface Shown {
  card: FileCard;
  seq: number;
  sha256: string;
}

export class ConversationFiles {
  readonly attachments: Attachments;
  readonly uploads: Uploads;
  #client: () => FilesClient | null;
  #scanning = false;
  /** The cards drawn, by the msgId of their file message. */
  #byMsgId = new Map<string, Shown>();
  #bySeq = new Map<number, Shown>();

  /** @param client - The client of the current connection, or null while there is none. */
  constructor(client: () => FilesClient | null) {
    this.#client = client;
    this.uploads = new Uploads(client);
    this.attachments = new Attachments((files) => this.uploads.add(files));
  }

  /** The deployment scans attachments (the session says so): pending files stay blocked. */
  set scanning(on: boolean) {
    this.#scanning = on;
  }

  /** Files dropped on `root` or pasted into it are sent. */
  bind(root: HTMLElement): void {
    this.attachments.bindDrop(root);
    this.attachments.bindPaste(root);
  }

  /** Stops taking files (a supervisor reads only; the conversation closed). */
  disable(): void {
    this.attachments.disable();
  }

  /** Whether a message is a scanner's verdict: it updates a card and is not drawn itself. */
  consumeVerdict(m: ChatMessage): boolean {
    const v = m.verdict;
    if (!v) return false;
    if (m.senderRole !== 'scanner') return true; // the client lets none through; never drawn
    const shown = this.#byMsgId.get(v.ref);
    // A verdict on other bytes than the message names says nothing about this file.
    if (shown && shown.sha256 === v.sha256 && shown.card.info.scan !== 'infected')
      shown.card.setScan(v.verdict, v.signature);
    return true;
  }

  /** The body of a file message's list item: its card, then its caption (text only). */
  body(m: ChatMessage): HTMLElement[] | null {
    const f = m.file;
    if (!f) return null;
    const seq = m.seq;
    const card = new FileCard(f, {
      scanning: this.#scanning,
      loadThumbnail: async () => (await this.#client()?.thumbnail(seq)) ?? null,
      onDownload: (c) => void downloadFile(c, (opts) => this.#open(seq, opts)),
    });
    const shown: Shown = { card, seq, sha256: f.sha256 };
    this.#byMsgId.set(m.msgId, shown);
    this.#bySeq.set(seq, shown);
    const out: HTMLElement[] = [card.root];
    if (m.text !== '') out.push(h('p', { class: 'lk-text', dir: 'auto' }, ...bidiSafeText(m.text)));
    return out;
  }

  /**
   * The file's plaintext stream from the current client. A client started without a reload (a
   * renewed token) knows only the messages after its start: it reads the history from the
   * file's message on, which teaches it the file (checked like any read), then opens it.
   */
  async #open(
    seq: number,
    opts: Parameters<FilesClient['openFile']>[1],
  ): Promise<ReadableStream<Uint8Array>> {
    const client = this.#client();
    if (!client) throw new LatchkeyError('UNAVAILABLE', 'not connected');
    try {
      return client.openFile(seq, opts);
    } catch (err) {
      if (!LatchkeyError.is(err, 'NOT_FOUND')) throw err;
      await client.history(seq - 1);
      return client.openFile(seq, opts);
    }
  }

  /** The client's `scan` event: the card of that message follows the verdict. */
  onScan(u: ScanUpdate): void {
    this.#bySeq.get(u.seq)?.card.setScan(u.scan as ScanState, u.signature);
  }

  /** Revokes what the cards hold. */
  dispose(): void {
    for (const s of this.#bySeq.values()) s.card.dispose();
  }
}
