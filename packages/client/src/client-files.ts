/**
 * The file half of the client's public API (docs/protocol.md "Files"), inherited by
 * `LatchkeyClient` (client.ts wires `files`): send a file, read one or its thumbnail, post a
 * scanner's verdict. Each method says what it does in files.ts.
 */
import type { ReadOptions } from './file-download.ts';
import type { FileSource } from './file-upload.ts';
import type { ClientFiles, SendFileOptions } from './files.ts';
import type { SendResult } from './send-queue.ts';

export abstract class ClientFileMethods {
  /** The client's file operations (set by the client's constructor). */
  protected abstract readonly files: ClientFiles;

  /**
   * Encrypts `file` in this client (c2sp.org/chunked-encryption under a key of its own), uploads
   * the ciphertext to the relay (resuming after a dropped request) and sends the message that
   * carries its key, name, type, size and SHA-256, sealed like any message. Resolves on the ack.
   * @throws LatchkeyError FORBIDDEN (role), BAD_REQUEST, TOO_LARGE, QUOTA_EXCEEDED, TIMEOUT
   *   (cancelled through `signal`), UNAVAILABLE, or the relay's code
   */
  sendFile(file: FileSource, opts: SendFileOptions = {}): Promise<SendResult> {
    return this.files.send(file, opts);
  }

  /**
   * The plaintext of the file of message `seq` (a message this client emitted or read), checked
   * chunk by chunk and, at the end, against its size and SHA-256: the stream errors with
   * DECRYPT_FAILED on any mismatch, and what was read before must then be discarded.
   * @throws LatchkeyError NOT_FOUND, FORBIDDEN (blocked by its scan state)
   */
  openFile(seq: number, opts: ReadOptions = {}): ReadableStream<Uint8Array> {
    return this.files.open(seq, opts);
  }

  /** The decrypted thumbnail of message `seq`, or null. @throws as `openFile` */
  thumbnail(seq: number): Promise<Uint8Array | null> {
    return this.files.thumbnail(seq);
  }

  /**
   * Posts a signed verdict on the file message `ref` (a scanner only).
   * @throws LatchkeyError FORBIDDEN, BAD_REQUEST
   */
  sendVerdict(v: Parameters<ClientFiles['sendVerdict']>[0]): Promise<SendResult> {
    return this.files.sendVerdict(v);
  }
}
