/**
 * Sender certificate: the key service vouches that an Ed25519 session key belongs to one
 * participant of one contact, for one epoch, until `notAfter`. The body travels as the exact JSON bytes the
 * key service signed (base64url), so no canonicalisation is needed to verify it.
 */
import { z } from 'zod';
import { Epoch, Id, Role, TimeMs, b64url, b64urlBytes } from './primitives.ts';

export const CERT_ALG = 'latchkey.v1.ed25519-cert' as const;

export const CertificateBody = z.strictObject({
  v: z.literal(1),
  alg: z.literal(CERT_ALG),
  contactId: Id,
  participantId: Id,
  role: Role,
  /** Ed25519 public key of the sender's session, 32 bytes. */
  publicKey: b64urlBytes(32),
  issuedAt: TimeMs,
  notAfter: TimeMs,
  /**
   * The epoch of the epoch statement it was issued with: the key only signs envelopes of that
   * epoch, so a certificate outlives neither a rotation nor its holder's removal.
   */
  epoch: Epoch,
});
export type CertificateBody = z.infer<typeof CertificateBody>;

export const SenderCertificate = z.strictObject({
  /** base64url of the UTF-8 JSON of a CertificateBody, exactly as signed. */
  body: b64url(1, 1024),
  /** Ed25519 signature by the key service over the context string and the body bytes. */
  sig: b64urlBytes(64),
});
export type SenderCertificate = z.infer<typeof SenderCertificate>;
