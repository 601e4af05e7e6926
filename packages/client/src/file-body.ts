/**
 * What a file or verdict message says, as the client writes and reads it (docs/protocol.md
 * "Files"): a declared name and media type made safe before sealing, the context that binds a
 * part's ciphertext to its contact and message, and who may send which body (a scanner sends
 * verdicts only; only a scanner's verdict counts).
 */
import { utf8Encode } from '@latchkey/crypto/codec';
import {
  FileName,
  MediaType,
  fileContextString,
  type FilePart,
  type MessageBody,
  type Role,
} from '@latchkey/protocol';

/** The chunked-encryption context of one part of a file message. */
export function fileContext(contactId: string, msgId: string, part: FilePart): Uint8Array {
  return utf8Encode(fileContextString(contactId, msgId, part));
}

/** A name safe to seal: path separators and controls replaced, at most 255 characters. */
export function safeFileName(name: string): string {
  // eslint-disable-next-line no-control-regex
  let s = name.replace(/[/\\\u0000-\u001f\u007f]/g, '_');
  if (s.length > 255) {
    const dot = s.lastIndexOf('.');
    const ext = dot > 0 && s.length - dot <= 16 ? s.slice(dot) : '';
    s = s.slice(0, 255 - ext.length) + ext;
  }
  return FileName.safeParse(s).success ? s : 'file';
}

/** A media type safe to seal: lower case, without parameters; unknown or odd ones are bytes. */
export function safeMediaType(type: string): string {
  const t = type.split(';')[0]!.trim().toLowerCase();
  return MediaType.safeParse(t).success ? t : 'application/octet-stream';
}

/**
 * Whether a sender of `role` may have sent `body`: text and files come from the sending roles,
 * verdicts from a scanner only. Anything else is shown as refused, never as its content.
 */
export function roleMaySend(role: Role, body: MessageBody): boolean {
  if (role === 'scanner') return body.type === 'verdict';
  if (role === 'supervisor') return false;
  return body.type !== 'verdict';
}

/** Lower-case hex, as a file message states its SHA-256. */
export function hexOf(bytes: Uint8Array): string {
  let out = '';
  for (const b of bytes) out += b.toString(16).padStart(2, '0');
  return out;
}
