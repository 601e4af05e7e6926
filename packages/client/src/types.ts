/** The message shapes the client SDK hands to applications. */
import type { ErrorCode, Role, ScanState, ScanVerdict, ThumbnailRef } from '@latchkey/protocol';
import type { IntegrityCode } from './transcript.ts';

/** A message of the contact, opened and verified. */
export interface ChatMessage {
  seq: number;
  msgId: string;
  senderId: string;
  senderRole: Role;
  sentAt: number;
  epoch: number;
  /** The text, or a file's caption ('' for a file without one, and for a verdict). */
  text: string;
  /** Sent by this participant. */
  own: boolean;
  /** With a file message: what its sealed body says, and its scan state now. */
  file?: FileInfo;
  /**
   * With a scanner's verdict: what it says. Applications do not show it as a message: it
   * updates the file it names (the `scan` event).
   */
  verdict?: VerdictInfo;
}

/** A file message's file as its sender described it (sealed), and what the scanner said. */
export interface FileInfo {
  name: string;
  /** Plaintext bytes. */
  size: number;
  /** The declared media type: never trusted for rendering. */
  type: string;
  /** Lower-case hex SHA-256 of the plaintext, checked when the file is read. */
  sha256: string;
  /** An encrypted image thumbnail, readable with `thumbnail(seq)`. */
  thumbnail: Pick<ThumbnailRef, 'type' | 'width' | 'height'> | null;
  /** `unscanned` without a scanner; `pending` until a scanner's verdict names this file. */
  scan: ScanState;
  /** With `infected`: the signature the scanner reported. */
  signature?: string;
}

/** A scanner's verdict on a file message of the contact. */
export interface VerdictInfo {
  /** The msgId of the file message. */
  ref: string;
  sha256: string;
  verdict: ScanVerdict;
  signature?: string;
  engine?: string;
}

/** A verdict changed what is known of a file (the `scan` event). */
export interface ScanUpdate {
  seq: number;
  msgId: string;
  scan: ScanState;
  signature?: string;
}

/**
 * A stored message that could not be shown as normal text: it failed to open (`DECRYPT_FAILED`:
 * tampered, forged, or its key is gone; `KEY_UNAVAILABLE`), or it opened but failed a transcript
 * or membership check (`INTEGRITY`, with the check in `integrity`). Such a message is shown only
 * as suspect, never as normal text.
 */
export interface FailedMessage {
  seq: number;
  msgId: string;
  senderId: string;
  code: ErrorCode;
  /** With code INTEGRITY: which check failed. */
  integrity?: IntegrityCode;
  /** With MISSING: how many messages are missing before this one. */
  missing?: number;
  /** With code INTEGRITY (not REPLAYED): the suspect text, to show only as marked suspect. */
  text?: string;
  sentAt?: number;
  epoch?: number;
}

export type HistoryEntry = ({ ok: true } & ChatMessage) | ({ ok: false } & FailedMessage);
