/**
 * HTTP bodies of the key service. Requests carry the participant token as
 * `Authorization: Bearer <token>`; errors are `{ error: { code, message } }` with the HTTP
 * status from ERROR_CODES.
 */
import { z } from 'zod';
import { SenderCertificate } from './certificate.ts';
import { EpochStatement } from './epoch-statement.ts';
import { ERROR_CODE_LIST } from './codes.ts';
import { Epoch, Id, b64url, b64urlBytes } from './primitives.ts';

export const KEYS_PATHS = {
  contactKey: '/v1/contact-key',
  serviceKey: '/v1/service-key',
  epochStatement: '/v1/epoch-statement',
  health: '/healthz',
} as const;

/**
 * HPKE (RFC 9180) suites for key delivery: `x25519` is DHKEM(X25519, HKDF-SHA256) with
 * AES-256-GCM; `xwing` the hybrid X25519 + ML-KEM-768 KEM (X-Wing) with the same KDF and AEAD.
 */
export const KeyDeliverySuite = z.enum(['x25519', 'xwing']);
export type KeyDeliverySuite = z.infer<typeof KeyDeliverySuite>;

/** The caller's per-session HPKE public key: content keys come back sealed to it. */
export const DeliveryKey = z.discriminatedUnion('suite', [
  z.strictObject({ suite: z.literal('x25519'), publicKey: b64urlBytes(32) }),
  z.strictObject({ suite: z.literal('xwing'), publicKey: b64urlBytes(1216) }),
]);
export type DeliveryKey = z.infer<typeof DeliveryKey>;

/** A content key sealed with HPKE base mode to the caller's delivery key. */
export const SealedKey = z.strictObject({
  suite: KeyDeliverySuite,
  /** KEM encapsulation: 32 bytes (x25519) or 1120 bytes (xwing). */
  enc: b64url(43, 1494),
  /** The 32-byte key sealed with AES-256-GCM (48 bytes with the tag). */
  ciphertext: b64urlBytes(48),
});
export type SealedKey = z.infer<typeof SealedKey>;

/**
 * HPKE `info` of a key delivery: binds the sealed key to its contact, epoch and recipient, so a
 * sealed key cannot be passed off for another epoch, contact or participant.
 */
export function keyDeliveryInfo(contactId: string, epoch: number, participantId: string): string {
  return JSON.stringify(['latchkey.v1.key-delivery', contactId, epoch, participantId]);
}

/** POST /v1/contact-key: the content key of the token's contact. */
export const ContactKeyRequest = z
  .strictObject({
    /** Epoch wanted; omitted means the current one. */
    epoch: Epoch.optional(),
    /** Ed25519 public key of the caller's session, to be certified (32 bytes). */
    signingKey: b64urlBytes(32).optional(),
    /** When present, the key comes back as `sealedKey` (HPKE) instead of `key`. */
    delivery: DeliveryKey.optional(),
    /**
     * Message-based rotation: rotate once if the current epoch is still `ifEpoch` (compare and
     * set) and old enough; the answer carries the current key either way. Not with `epoch`.
     */
    rotate: z.strictObject({ ifEpoch: Epoch }).optional(),
  })
  .refine((r) => r.rotate === undefined || r.epoch === undefined, {
    message: 'rotate asks for the current key: no epoch',
    path: ['rotate'],
  });
export type ContactKeyRequest = z.infer<typeof ContactKeyRequest>;

export const ContactKeyResponse = z
  .strictObject({
    contactId: Id,
    epoch: Epoch,
    currentEpoch: Epoch,
    /** The AES-256 content key of that epoch (32 bytes), when no `delivery` key was sent. */
    key: b64urlBytes(32).optional(),
    /** The content key sealed to the request's `delivery` key. */
    sealedKey: SealedKey.optional(),
    /** Present when `signingKey` was sent. */
    certificate: SenderCertificate.optional(),
    /** True when this request rotated the contact's key (`rotate` or the age rule). */
    rotated: z.boolean().optional(),
    /** The service's message-based rule: ask to rotate after this many messages of one epoch. */
    rotateAfterMessages: z.number().int().min(1).optional(),
    /** The contact's current epoch statement (signed; its epoch is `currentEpoch`). */
    statement: EpochStatement,
  })
  .refine(
    (r) => (r.key === undefined) !== (r.sealedKey === undefined),
    'exactly one of key and sealedKey',
  );
export type ContactKeyResponse = z.infer<typeof ContactKeyResponse>;

/** POST /v1/epoch-statement (bearer token, no body): the current epoch statement of its contact. */
export const EpochStatementResponse = z.strictObject({ statement: EpochStatement });
export type EpochStatementResponse = z.infer<typeof EpochStatementResponse>;

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
