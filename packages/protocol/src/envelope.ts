/**
 * The envelope: what a client seals, the relay orders and stores, and readers open.
 * Every field but `seq` and the ciphertext is bound as AES-GCM additional data (see
 * @latchkey/crypto/envelope); `sig` is the sender's Ed25519 signature, `cert` vouches for it.
 */
import { z } from 'zod';
import { ENVELOPE_ALG, LIMITS } from './version.ts';
import { SenderCertificate } from './certificate.ts';
import { Epoch, Id, MsgId, Seq, TimeMs, b64url, b64urlBytes } from './primitives.ts';

export const EnvelopeHeader = z.strictObject({
  v: z.literal(1),
  alg: z.literal(ENVELOPE_ALG),
  contactId: Id,
  epoch: Epoch,
  senderId: Id,
  msgId: MsgId,
  sentAt: TimeMs,
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

/** What the plaintext of an envelope holds once opened (UTF-8 JSON). */
export const MessageBody = z.strictObject({
  type: z.literal('text'),
  text: z.string().min(1).max(16 * 1024),
});
export type MessageBody = z.infer<typeof MessageBody>;
