/**
 * Wire formats of the External Key Manager API (docs/key-manager-api.yaml, explained in
 * docs/key-management.md): what an enterprise key service implements so that Latchkey can wrap
 * and unwrap content keys under the enterprise's key-encryption key (wrap model), or keep the
 * content keys itself (key-store model). The HTTP adapter and the reference key manager
 * (apps/kms-example) both parse with these schemas. No message content ever crosses this API.
 *
 * Requests are strict objects (the reference key manager refuses unknown fields in what it is
 * sent). Answers are forward compatible: `z.object`, which ignores (strips) unknown fields, so a
 * key manager may add fields without breaking older key services, while every field Latchkey
 * uses is validated strictly; a failed check is a malformed answer (docs/key-management.md
 * "Answers: unknown fields"). Error answers likewise accept any `code` string (unknown codes
 * are handled by HTTP status).
 *
 * Defined here, with every other wire format (DESIGN.md); @latchkey/keys re-exports them.
 */
import { z } from 'zod';
import { ERROR_CODE_LIST } from './codes.ts';
import { Epoch, Id, b64url, b64urlBytes } from './primitives.ts';

/** Version prefix of every path; a breaking change gets a new prefix. */
export const KM_API_VERSION = 'v1';

/** Paths of the API. `{keyId}` is the enterprise's name of its key-encryption key. */
export const KM_PATHS = {
  health: '/v1/health',
  key: (keyId: string) => `/v1/keys/${encodeURIComponent(keyId)}`,
  wrap: (keyId: string) => `/v1/keys/${encodeURIComponent(keyId)}/wrap`,
  unwrap: (keyId: string) => `/v1/keys/${encodeURIComponent(keyId)}/unwrap`,
  generate: (keyId: string) => `/v1/keys/${encodeURIComponent(keyId)}/generate`,
  rewrap: (keyId: string) => `/v1/keys/${encodeURIComponent(keyId)}/rewrap`,
  destroy: (keyId: string) => `/v1/keys/${encodeURIComponent(keyId)}/destroy`,
  storeContact: (contactId: string) => `/v1/store/contacts/${contactId}`,
  storeRotate: (contactId: string) => `/v1/store/contacts/${contactId}/rotate`,
  storeKey: (contactId: string, epoch: number | 'current') =>
    `/v1/store/contacts/${contactId}/keys/${epoch}`,
} as const;

/** Names of the KEK: URL-safe, short. */
export const KeyId = z
  .string()
  .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'keyId must be 1-64 of [A-Za-z0-9_.-]');

/**
 * Why Latchkey asks, so the enterprise can log, rate-limit or refuse per purpose:
 * `create` a contact's first key, `rotate` to a new epoch, `fetch` for a participant,
 * `rewrap` under the KEK's newest version, `destroy` (crypto-shredding). docs/key-management.md
 * "Which calls each action makes" lists them per Latchkey action.
 */
export const KeyReason = z.enum(['create', 'rotate', 'fetch', 'rewrap', 'destroy']);
export type KeyReason = z.infer<typeof KeyReason>;

/** A 32-byte AES-256 content key, base64url. */
export const ContentKeyB64 = b64urlBytes(32);
/** A wrapped key: opaque to Latchkey, at most 1 KiB of bytes. */
export const WrappedB64 = b64url(16, 1366);

// ---- health and metadata ------------------------------------------------------------------

/** GET /v1/health */
export const KmHealthResponse = z.object({
  status: z.enum(['ok', 'degraded']),
  /** Free text for operators, no secrets. */
  detail: z.string().max(200).optional(),
});
export type KmHealthResponse = z.infer<typeof KmHealthResponse>;

/** GET /v1/keys/{keyId} */
export const KmKeyMetadata = z.object({
  keyId: KeyId,
  algorithm: z.string().min(1).max(64),
  /** The version new wraps use. */
  primaryVersion: z.number().int().min(1),
  state: z.enum(['enabled', 'disabled']),
  /**
   * What the key offers: `wrap`, `unwrap` (required), `generate`, `rewrap`, `destroy` (optional);
   * other names are ignored (forward compatible).
   */
  operations: z.array(z.string().min(1).max(32)).max(16),
  createdAt: z.number().int().min(0),
});
export type KmKeyMetadata = z.infer<typeof KmKeyMetadata>;

// ---- wrap model ---------------------------------------------------------------------------

/** Additional authenticated context of every wrap and unwrap: the key is bound to it. */
const WrapCtx = { contactId: Id, epoch: Epoch, reason: KeyReason };

/** POST /v1/keys/{keyId}/wrap */
export const KmWrapRequest = z.strictObject({ ...WrapCtx, key: ContentKeyB64 });
export type KmWrapRequest = z.infer<typeof KmWrapRequest>;

/** Answer of wrap, generate and rewrap: the wrapped form and the KEK version that made it. */
export const KmWrapResponse = z.object({
  wrapped: WrappedB64,
  keyVersion: z.number().int().min(1),
});
export type KmWrapResponse = z.infer<typeof KmWrapResponse>;

/** POST /v1/keys/{keyId}/unwrap and POST /v1/keys/{keyId}/rewrap */
export const KmUnwrapRequest = z.strictObject({ ...WrapCtx, wrapped: WrappedB64 });
export type KmUnwrapRequest = z.infer<typeof KmUnwrapRequest>;

export const KmUnwrapResponse = z.object({ key: ContentKeyB64 });
export type KmUnwrapResponse = z.infer<typeof KmUnwrapResponse>;

/**
 * POST /v1/keys/{keyId}/destroy: a contact was crypto-shredded; every later wrap, unwrap,
 * generate or rewrap for it should be refused (403) for ever. Answer 204.
 */
export const KmDestroyRequest = z.strictObject({ contactId: Id, reason: z.literal('destroy') });
export type KmDestroyRequest = z.infer<typeof KmDestroyRequest>;

/** POST /v1/keys/{keyId}/generate (data-key style: a fresh key and its wrapped form). */
export const KmGenerateRequest = z.strictObject(WrapCtx);
export type KmGenerateRequest = z.infer<typeof KmGenerateRequest>;

export const KmGenerateResponse = z.object({
  key: ContentKeyB64,
  wrapped: WrappedB64,
  keyVersion: z.number().int().min(1),
});
export type KmGenerateResponse = z.infer<typeof KmGenerateResponse>;

// ---- key-store model ----------------------------------------------------------------------

/** POST /v1/store/contacts/{contactId} (create, idempotent) and .../rotate. */
export const KmStoreRequest = z.strictObject({ reason: KeyReason });
export type KmStoreRequest = z.infer<typeof KmStoreRequest>;

/** Answer of create, rotate and GET /v1/store/contacts/{contactId}. */
export const KmStoreContact = z.object({ contactId: Id, currentEpoch: Epoch });
export type KmStoreContact = z.infer<typeof KmStoreContact>;

/** GET /v1/store/contacts/{contactId}/keys/{epoch}?reason=fetch */
export const KmStoreKey = z.object({
  contactId: Id,
  epoch: Epoch,
  currentEpoch: Epoch,
  key: ContentKeyB64,
});
export type KmStoreKey = z.infer<typeof KmStoreKey>;

// ---- errors -------------------------------------------------------------------------------

/**
 * Every error: `{ error: { code, message } }`. Codes the client acts on: NOT_FOUND (unknown or
 * destroyed contact or epoch), FORBIDDEN (refused by policy: revoked, shredded, rate limit),
 * DECRYPT_FAILED (the wrapped key does not authenticate under this KEK and context),
 * AUTH_INVALID / AUTH_EXPIRED (request signature), CONFLICT, BAD_REQUEST.
 */
export const KmErrorResponse = z.object({
  error: z.object({
    code: z.union([z.enum(ERROR_CODE_LIST), z.string().regex(/^[A-Z][A-Z0-9_]{0,63}$/)]),
    message: z.string().max(200),
  }),
});
export type KmErrorResponse = z.infer<typeof KmErrorResponse>;
