/** The message shapes the client SDK hands to applications. */
import type { ErrorCode, Role } from '@latchkey/protocol';
import type { IntegrityCode } from './transcript.ts';

/** A message of the contact, opened and verified. */
export interface ChatMessage {
  seq: number;
  msgId: string;
  senderId: string;
  senderRole: Role;
  sentAt: number;
  epoch: number;
  text: string;
  /** Sent by this participant. */
  own: boolean;
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
