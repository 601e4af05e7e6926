/**
 * The client's file operations (docs/protocol.md "Files"): send a file (encrypt and upload it and
 * its thumbnail, then seal the message that carries their keys), open a file or its thumbnail
 * (verified plaintext, refused while its scan state blocks it), post a scanner's verdict, and
 * present checked messages with what they say of files and verdicts.
 */
import { fromBase64Url, toBase64Url, utf8Encode } from '@latchkey/crypto/codec';
import { randomBytes } from '@latchkey/crypto/random';
import {
  FILE_LIMITS,
  LIMITS,
  LatchkeyError,
  MessageBody,
  SENDING_ROLES,
  type FileBody,
  type SealedEnvelope,
  type ThumbnailRef,
  type VerdictBody,
} from '@latchkey/protocol';
import { fileContext, safeFileName, safeMediaType } from './file-body.ts';
import { readPart, readWhole, type ReadOptions } from './file-download.ts';
import type { FileHttp } from './file-http.ts';
import { FileLedger } from './file-ledger.ts';
import { sourceOf, uploadPart, type FileSource } from './file-upload.ts';
import { bodyOf } from './inbox.ts';
import type { Identity } from './key-session.ts';
import type { SendResult } from './send-queue.ts';
import type { ChatMessage, HistoryEntry, ScanUpdate } from './types.ts';

export interface SendFileOptions {
  /** A caption sent with the file. */
  text?: string;
  /** An image thumbnail made by the caller (the web app makes JPEGs of at most 320 px). */
  thumbnail?: { bytes: Uint8Array; type: ThumbnailRef['type']; width: number; height: number };
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export interface FilesDeps {
  /** The relay's file API: fetch, origin and this client's token. */
  http: FileHttp;
  identity(): Identity;
  sender: { seal(id: Identity, msgId: string, plaintext: Uint8Array): Promise<SealedEnvelope> };
  queue: {
    enqueue(envelope: SealedEnvelope, text: string, plaintext: Uint8Array): Promise<SendResult>;
  };
  scan(update: ScanUpdate): void;
}

export class ClientFiles {
  readonly #d: FilesDeps;
  readonly ledger: FileLedger;

  constructor(deps: FilesDeps, scanning: boolean) {
    this.#d = deps;
    this.ledger = new FileLedger(scanning);
  }

  /**
   * Encrypts and uploads `file` (and the thumbnail), then sends the message that carries them.
   * @throws LatchkeyError FORBIDDEN (role), BAD_REQUEST, TOO_LARGE, QUOTA_EXCEEDED, TIMEOUT
   *   (cancelled), UNAVAILABLE, or the relay's code.
   */
  async send(file: FileSource, opts: SendFileOptions = {}): Promise<SendResult> {
    const id = this.#d.identity();
    if (!SENDING_ROLES.has(id.role))
      throw new LatchkeyError('FORBIDDEN', `${id.role} may not send`);
    const src = sourceOf(file);
    if (!Number.isSafeInteger(src.size) || src.size < 0)
      throw new LatchkeyError('BAD_REQUEST', 'file size');
    const msgId = toBase64Url(randomBytes(16));
    const body: FileBody = { type: 'file', file: undefined as never };
    if (opts.text !== undefined && opts.text !== '') body.text = opts.text;
    const thumb = opts.thumbnail;
    if (thumb && (thumb.bytes.length === 0 || thumb.bytes.length > FILE_LIMITS.maxThumbnailBytes))
      throw new LatchkeyError('TOO_LARGE', 'thumbnail too large');
    // Checked before anything is uploaded: a caption or name that cannot be sent fails first.
    const probe = {
      ...body,
      file: placeholderRef(safeFileName(src.name), safeMediaType(src.type), src.size),
    };
    if (!MessageBody.safeParse(probe).success) throw new LatchkeyError('BAD_REQUEST', 'caption');

    const h = this.#d.http;
    const key = randomBytes(32);
    const upOpts = opts.signal ? { signal: opts.signal } : {};
    const up = await uploadPart(h, src, key, fileContext(id.contactId, msgId, 'file'), {
      ...upOpts,
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
    });
    body.file = { ...probe.file, blob: up.blob, key: toBase64Url(key), sha256: up.sha256 };
    if (thumb) {
      const tkey = randomBytes(32);
      const bytes = thumb.bytes;
      const t = await uploadPart(
        h,
        {
          name: 'thumb',
          type: thumb.type,
          size: bytes.length,
          read: async (o, n) => bytes.slice(o, o + n),
        },
        tkey,
        fileContext(id.contactId, msgId, 'thumb'),
        upOpts,
      );
      body.thumb = {
        blob: t.blob,
        key: toBase64Url(tkey),
        type: thumb.type,
        size: bytes.length,
        sha256: t.sha256,
        width: thumb.width,
        height: thumb.height,
      };
    }
    return this.#sealAndQueue(id, msgId, body, body.text ?? '');
  }

  /**
   * Posts a scanner's verdict on a file message.
   * @throws LatchkeyError FORBIDDEN unless this participant is a scanner; BAD_REQUEST
   */
  async sendVerdict(v: Omit<VerdictBody, 'type'>): Promise<SendResult> {
    const id = this.#d.identity();
    if (id.role !== 'scanner')
      throw new LatchkeyError('FORBIDDEN', 'only a scanner posts verdicts');
    const body = MessageBody.safeParse({ ...v, type: 'verdict' });
    if (!body.success || body.data.type !== 'verdict')
      throw new LatchkeyError('BAD_REQUEST', 'malformed verdict');
    return this.#sealAndQueue(id, toBase64Url(randomBytes(16)), body.data, '');
  }

  /**
   * The verified plaintext of the file of message `seq` (seen by this client).
   * @throws LatchkeyError NOT_FOUND (no such file message seen), FORBIDDEN (its scan state blocks
   *   it: pending while a scanner runs, infected, error; a scanner may read it anyway)
   */
  open(seq: number, opts: ReadOptions = {}): ReadableStream<Uint8Array> {
    const { known, id } = this.#readable(seq);
    const f = known.body.file;
    return readPart(
      this.#d.http,
      {
        blob: f.blob,
        key: fromBase64Url(f.key),
        context: fileContext(id.contactId, known.msgId, 'file'),
        size: f.size,
        sha256: f.sha256,
      },
      opts,
    );
  }

  /** The decrypted thumbnail of message `seq`, or null when it has none. Same refusals as `open`. */
  async thumbnail(seq: number): Promise<Uint8Array | null> {
    const { known, id } = this.#readable(seq);
    const t = known.body.thumb;
    if (!t) return null;
    return readWhole(this.#d.http, {
      blob: t.blob,
      key: fromBase64Url(t.key),
      context: fileContext(id.contactId, known.msgId, 'thumb'),
      size: t.size,
      sha256: t.sha256,
    });
  }

  /** Adds what a checked message says of a file or verdict; reports a verdict's effect. */
  present(m: ChatMessage): ChatMessage {
    const body = bodyOf.get(m);
    if (body?.type === 'file') m.file = this.ledger.file(m.seq, m.msgId, body);
    if (body?.type === 'verdict') {
      m.verdict = { ref: body.ref, sha256: body.sha256, verdict: body.verdict };
      if (body.signature !== undefined) m.verdict.signature = body.signature;
      if (body.engine !== undefined) m.verdict.engine = body.engine;
      const update = this.ledger.verdict(body);
      if (update) this.#d.scan(update);
    }
    return m;
  }

  /** `present` over a history read, then each file with the verdicts of the whole read. */
  presentAll(entries: HistoryEntry[]): HistoryEntry[] {
    for (const e of entries) if (e.ok) this.present(e);
    for (const e of entries) if (e.ok && e.file) e.file = this.ledger.info(e.seq) ?? e.file;
    return entries;
  }

  #readable(seq: number): { known: NonNullable<ReturnType<FileLedger['get']>>; id: Identity } {
    const id = this.#d.identity();
    const known = this.ledger.get(seq);
    if (!known) throw new LatchkeyError('NOT_FOUND', 'no file message with this seq was seen');
    const scan = this.ledger.info(seq)!.scan;
    if (id.role !== 'scanner' && FileLedger.blocks(scan))
      throw new LatchkeyError('FORBIDDEN', `file is blocked: ${scan}`);
    return { known, id };
  }

  async #sealAndQueue(
    id: Identity,
    msgId: string,
    body: MessageBody,
    text: string,
  ): Promise<SendResult> {
    const plaintext = utf8Encode(JSON.stringify(body));
    if (plaintext.length > LIMITS.maxPlaintextBytes)
      throw new LatchkeyError('TOO_LARGE', 'message too large');
    const envelope = await this.#d.sender.seal(id, msgId, plaintext);
    return this.#d.queue.enqueue(envelope, text, plaintext);
  }
}

/** A file reference with the real name, type and size, for checking before the upload. */
function placeholderRef(name: string, type: string, size: number): FileBody['file'] {
  return { blob: 'A'.repeat(22), key: 'A'.repeat(43), name, type, size, sha256: '0'.repeat(64) };
}
