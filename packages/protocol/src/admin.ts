/**
 * Admin API bodies (docs/admin-api.md), served by the relay and the key service under
 * `/admin/v1/...`. Requests carry `Authorization: Bearer <api key id>:<api key secret>`
 * (the secret as base64url); errors are `{ error: { code, message } }` like everywhere else.
 * Moderation goes to the key service first, then to the relay (see docs/admin-api.md "Flow").
 */
import { z } from 'zod';
import { ContactInfo, ContactState } from './membership.ts';
import { Id, Role, TimeMs, b64urlBytes } from './primitives.ts';

export const ADMIN_PREFIX = '/admin/v1' as const;

export const ADMIN_PATHS = {
  contacts: `${ADMIN_PREFIX}/contacts`,
  contact: (contactId: string) => `${ADMIN_PREFIX}/contacts/${encodeURIComponent(contactId)}`,
  close: (contactId: string) => `${ADMIN_PREFIX}/contacts/${encodeURIComponent(contactId)}/close`,
  expiry: (contactId: string) => `${ADMIN_PREFIX}/contacts/${encodeURIComponent(contactId)}/expiry`,
  kick: (contactId: string) => `${ADMIN_PREFIX}/contacts/${encodeURIComponent(contactId)}/kick`,
  invite: (contactId: string) => `${ADMIN_PREFIX}/contacts/${encodeURIComponent(contactId)}/invite`,
  transfer: (contactId: string) =>
    `${ADMIN_PREFIX}/contacts/${encodeURIComponent(contactId)}/transfer`,
  shred: (contactId: string) => `${ADMIN_PREFIX}/contacts/${encodeURIComponent(contactId)}/shred`,
  /** Key service only: master-key rotation of the internal key manager, online. */
  rewrap: `${ADMIN_PREFIX}/keys/rewrap`,
  /** Key service only: completes pending shreds by retiring the key-encryption key generation. */
  shredComplete: `${ADMIN_PREFIX}/keys/shred-complete`,
} as const;

/** Query of GET /admin/v1/contacts. */
export const ListContactsQuery = z.strictObject({
  state: ContactState.optional(),
  /** Contacts with an id greater than this one (paging). */
  after: Id.optional(),
  limit: z.coerce.number().int().min(1).max(500).optional(),
});
export type ListContactsQuery = z.infer<typeof ListContactsQuery>;

export const ListContactsResponse = z.strictObject({
  contacts: z.array(ContactInfo).max(500),
  /** Pass as `after` for the next page; absent on the last page. */
  next: Id.optional(),
});
export type ListContactsResponse = z.infer<typeof ListContactsResponse>;

/** POST .../close: no body (or `{}`). */
export const CloseContactRequest = z.strictObject({});
export type CloseContactRequest = z.infer<typeof CloseContactRequest>;

/** POST .../expiry */
export const SetExpiryRequest = z.strictObject({ expiresAt: TimeMs });
export type SetExpiryRequest = z.infer<typeof SetExpiryRequest>;

/** POST .../kick: the participant's connections end and its tokens are refused for the contact. */
export const KickRequest = z.strictObject({ participantId: Id });
export type KickRequest = z.infer<typeof KickRequest>;

/** POST .../invite: admits a participant ahead of its first connection (a second agent, a supervisor). */
export const InviteRequest = z.strictObject({
  participantId: Id,
  role: Role.exclude(['visitor']),
});
export type InviteRequest = z.infer<typeof InviteRequest>;

/** POST .../transfer: `from` (an agent) leaves, `to` joins as an agent and reads the whole history. */
export const TransferRequest = z
  .strictObject({ from: Id, to: Id })
  .refine((r) => r.from !== r.to, { message: 'from and to must differ', path: ['to'] });
export type TransferRequest = z.infer<typeof TransferRequest>;

/**
 * Answer of every moderation call: the contact afterwards. The key service adds the content-key
 * epoch it rotated to, when it did (kick and transfer rotate, so the departed miss what follows).
 */
export const ContactResponse = z.strictObject({
  contact: ContactInfo,
  rotatedEpoch: z.number().int().min(0).optional(),
  /**
   * Key service, kick and transfer: the removal is recorded but the key rotation it owes waits
   * for the key manager (retried until done; docs/admin-api.md "Never half-applied").
   */
  rotationPending: z.literal(true).optional(),
});
export type ContactResponse = z.infer<typeof ContactResponse>;

/** POST .../shred: no body (or `{}`). Crypto-shredding: keys destroyed, ciphertext deleted. */
export const ShredRequest = z.strictObject({});
export type ShredRequest = z.infer<typeof ShredRequest>;

/**
 * Answer of a shred. The key service says `keysDestroyed`, the relay how many stored messages
 * it deleted. Idempotent: shredding again answers the same way (with 0 messages).
 */
export const ShredResponse = z.strictObject({
  contactId: Id,
  keysDestroyed: z.boolean().optional(),
  messagesDeleted: z.number().int().min(0).optional(),
});
export type ShredResponse = z.infer<typeof ShredResponse>;

/**
 * POST /admin/v1/keys/rewrap (key service): re-wrap every content key under a new master key
 * (internal key manager), or, without `newMasterKey`, in place under the newest version of the
 * external key manager's KEK (its `rewrap`; the content keys never leave it).
 */
export const RewrapRequest = z.strictObject({ newMasterKey: b64urlBytes(32).optional() });
export type RewrapRequest = z.infer<typeof RewrapRequest>;

export const RewrapResponse = z.strictObject({ rewrapped: z.number().int().min(0) });
export type RewrapResponse = z.infer<typeof RewrapResponse>;

/**
 * POST /admin/v1/keys/shred-complete (key service): retires the key-encryption key generation
 * that shredded keys were wrapped under (docs/key-management.md "Completing a shred").
 * `newMasterKey` only for an internal key manager whose master key comes from the environment.
 */
export const ShredCompleteRequest = z.strictObject({ newMasterKey: b64urlBytes(32).optional() });
export type ShredCompleteRequest = z.infer<typeof ShredCompleteRequest>;

export const ShredCompleteResponse = z.strictObject({
  /** Generations retired (their KEK destroyed) by this call; empty when nothing was pending. */
  retired: z.array(z.number().int().min(1)),
  /** Keys re-wrapped under the new generation by this call. */
  rewrapped: z.number().int().min(0),
  /** The current generation afterwards. */
  generation: z.number().int().min(1),
});
export type ShredCompleteResponse = z.infer<typeof ShredCompleteResponse>;
