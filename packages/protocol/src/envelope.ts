/**
 * The envelope: what a client seals, the relay orders and stores, and readers open.
 * Every field but `seq` and the ciphertext is bound as AES-GCM additional data (see
 * @latchkey/crypto/envelope); `sig` is the sender's Ed25519 signature, `cert` vouches for it.
 * Version 2 adds the transcript fields (`ctr`, `prev`, `seenSeq`, `seenHash`) that let
 * receivers catch a relay that replays, reorders, drops or truncates (docs/threat-model.md).
 */
import { z } from 'zod';
import { ENVELOPE_ALG, ENVELOPE_VERSION, LIMITS } from './version.ts';
import { SenderCertificate } from './certificate.ts';
import { FileBody, TextBody, VerdictBody } from './files.ts';
import { Epoch, Id, MsgId, Seq, SeqCursor, TimeMs, b64url, b64urlBytes } from './primitives.ts';

export const EnvelopeHeader = z.strictObject({
  v: z.literal(ENVELOPE_VERSION),
  alg: z.literal(ENVELOPE_ALG),
  contactId: Id,
  epoch: Epoch,
  senderId: Id,
  msgId: MsgId,
  sentAt: TimeMs,
  /** The sender session's counter: 1 for its first message, then +1 per message. */
  ctr: z
    .number()
    .int()
    .min(1)
    .max(2 ** 32 - 1),
  /** The session's chain value before this message (32 zero bytes for ctr 1). */
  prev: b64urlBytes(32),
  /** The last seq the sender had verified when it sealed (0: none). */
  seenSeq: SeqCursor,
  /** The sender's transcript hash at `seenSeq` (32 zero bytes for 0). */
  seenHash: b64urlBytes(32),
});
export type EnvelopeHeader = z.infer<typeof EnvelopeHeader>;

/** A sealed envelope as a client sends it (no seq yet). */
export const SealedEnvelope = EnvelopeHeader.extend({
  nonce: b64urlBytes(12),
  ciphertext: b64url(22, LIMITS.maxCiphertextChars),
  sig: b64urlBytes(64),
  cert: SenderCertificate,
});
export type SealedEnvelope = z.infer<typeof SealedEnvelope>;

/** A stored envelope: the relay has assigned its per-contact `seq`. */
export const StoredEnvelope = SealedEnvelope.extend({ seq: Seq });
export type StoredEnvelope = z.infer<typeof StoredEnvelope>;

/**
 * What the plaintext of an envelope holds once opened (UTF-8 JSON): a text, a file (files.ts) or
 * a scanner's verdict on a file.
 */
export const MessageBody = z.discriminatedUnion('type', [TextBody, FileBody, VerdictBody]);
export type MessageBody = z.infer<typeof MessageBody>;
