/**
 * HTTP bodies of the key service. Requests carry the participant token as
 * `Authorization: Bearer <token>`; errors are `{ error: { code, message } }` with the HTTP
 * status from ERROR_CODES.
 */
import { z } from 'zod';
import { SenderCertificate } from './certificate.ts';
import { ERROR_CODE_LIST } from './codes.ts';
import { Epoch, Id, b64urlBytes } from './primitives.ts';

export const KEYS_PATHS = {
  contactKey: '/v1/contact-key',
  serviceKey: '/v1/service-key',
  health: '/healthz',
} as const;

/** POST /v1/contact-key: the content key of the token's contact. */
export const ContactKeyRequest = z.strictObject({
  /** Epoch wanted; omitted means the current one. */
  epoch: Epoch.optional(),
  /** Ed25519 public key of the caller's session, to be certified (32 bytes). */
  signingKey: b64urlBytes(32).optional(),
});
export type ContactKeyRequest = z.infer<typeof ContactKeyRequest>;

export const ContactKeyResponse = z.strictObject({
  contactId: Id,
  epoch: Epoch,
  currentEpoch: Epoch,
  /** The AES-256 content key of that epoch (32 bytes). */
  key: b64urlBytes(32),
  /** Present when `signingKey` was sent. */
  certificate: SenderCertificate.optional(),
});
export type ContactKeyResponse = z.infer<typeof ContactKeyResponse>;

/** GET /v1/service-key: the key service's Ed25519 public key that signs certificates. */
export const ServiceKeyResponse = z.strictObject({
  alg: z.literal('Ed25519'),
  publicKey: b64urlBytes(32),
});
export type ServiceKeyResponse = z.infer<typeof ServiceKeyResponse>;

export const HealthResponse = z.strictObject({ status: z.enum(['ok', 'degraded']) });

export const ErrorResponse = z.strictObject({
  error: z.strictObject({ code: z.enum(ERROR_CODE_LIST), message: z.string().max(200) }),
});
export type ErrorResponse = z.infer<typeof ErrorResponse>;
