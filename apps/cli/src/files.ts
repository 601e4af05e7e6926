/**
 * The file side of the participant subcommands (docs/protocol.md "Files"): `latchkey send --file`
 * reads a local file through a handle (never whole into memory) for the client to encrypt and
 * upload; `latchkey download` writes a file's verified plaintext to a temporary file beside the
 * target and renames it only once every chunk, the size and the SHA-256 checked out, so a
 * failed download leaves nothing at the path; and how `read` prints file and verdict messages.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import type { ChatMessage, FileSourceLike, LatchkeyClient } from '@latchkey/client';
import { LatchkeyError } from '@latchkey/protocol';
import { UsageError } from './usage.ts';

/** Media types by extension, for what `send --file` declares (the reader never trusts it). */
const TYPES: Readonly<Record<string, string>> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.pdf': 'application/pdf',
  '.txt': 'text/plain',
  '.csv': 'text/csv',
  '.json': 'application/json',
  '.zip': 'application/zip',
  '.docx': 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
  '.xlsx': 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
};

/** A local file as the client reads it, by offset; close it after. */
export async function localFile(
  path: string,
): Promise<{ source: FileSourceLike; close: () => Promise<void> }> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch {
    throw new UsageError(`cannot read --file ${path}`);
  }
  const st = await handle.stat();
  if (!st.isFile()) {
    await handle.close();
    throw new UsageError(`--file ${path} is not a regular file`);
  }
  const fh = handle;
  return {
    source: {
      name: basename(path),
      type: TYPES[extname(path).toLowerCase()] ?? 'application/octet-stream',
      size: st.size,
      read: async (offset, length) => {
        const buf = new Uint8Array(length);
        let at = 0;
        while (at < length) {
          const { bytesRead } = await fh.read(buf, at, length - at, offset + at);
          if (bytesRead === 0) break;
          at += bytesRead;
        }
        return at === length ? buf : buf.subarray(0, at);
      },
    },
    close: () => fh.close(),
  };
}

/**
 * Writes the plaintext of the file of message `seq` to `path` (replacing it only on success).
 * @returns the bytes written and the SHA-256 the message states (which the client checked).
 * @throws LatchkeyError NOT_FOUND (no file message at seq), FORBIDDEN (blocked by its scan),
 *   DECRYPT_FAILED (any chunk, the length or the digest): then nothing is left at `path`.
 */
export async function downloadTo(
  client: LatchkeyClient,
  seq: number,
  path: string,
  file: NonNullable<ChatMessage['file']>,
): Promise<{ bytes: number; sha256: string }> {
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.part`);
  const stream = client.openFile(seq);
  const out = await open(temp, 'wx', 0o600);
  let bytes = 0;
  try {
    const reader = stream.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      await out.write(value);
      bytes += value.length;
    }
    await out.sync();
    await out.close();
    await rename(temp, path);
    return { bytes, sha256: file.sha256 };
  } catch (err) {
    await out.close().catch(() => undefined);
    await unlink(temp).catch(() => undefined);
    throw err instanceof LatchkeyError
      ? err
      : new LatchkeyError('UNAVAILABLE', err instanceof Error ? err.message : 'download failed');
  }
}

/** A file or verdict message in `read`'s JSON form (null: an ordinary text message). */
export function fileJson(e: ChatMessage): Record<string, unknown> | null {
  if (e.file) {
    const { name, size, type, sha256 } = e.file;
    return {
      seq: e.seq,
      sender: e.senderId,
      sentAt: e.sentAt,
      ...(e.text === '' ? {} : { text: e.text }),
      file: { name, size, type, sha256 },
    };
  }
  if (e.verdict) return { seq: e.seq, sender: e.senderId, sentAt: e.sentAt, verdict: e.verdict };
  return null;
}

/** What `read` prints between `SENDER: ` and the text for a file or verdict message. */
export function fileLabel(e: ChatMessage, printable: (s: string) => string): string | null {
  if (e.file) {
    const f = e.file;
    const tag = `[file ${printable(f.name)} ${f.size} bytes sha256=${f.sha256}]`;
    return e.text === '' ? tag : `${tag} ${printable(e.text)}`;
  }
  if (e.verdict) {
    const v = e.verdict;
    const sig = v.signature === undefined ? '' : ` signature=${printable(v.signature)}`;
    return `[scan ${v.verdict} ref=${v.ref} sha256=${v.sha256}${sig}]`;
  }
  return null;
}
