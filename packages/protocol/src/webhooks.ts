/**
 * Webhook admin API bodies (docs/webhooks.md), served by the relay under
 * `/admin/v1/webhooks/...` with the same API-key authentication and error shape as the rest of
 * the admin API (docs/admin-api.md). The event payloads themselves live in @latchkey/webhooks.
 */
import { z } from 'zod';
import { ADMIN_PREFIX } from './admin.ts';
import { TimeMs } from './primitives.ts';

/** Every event a relay or key service emits (metadata only: never ciphertext or plaintext). */
export const WEBHOOK_EVENT_TYPES = [
  'contact.opened',
  'contact.closed',
  'contact.expired',
  'contact.shredded',
  'participant.joined',
  'participant.left',
  'participant.kicked',
  'message.stored',
  'key.rotated',
  'key.accessed',
  'key.denied',
  'key.destroyed',
] as const;
export const WebhookEventType = z.enum(WEBHOOK_EVENT_TYPES);
export type WebhookEventType = z.infer<typeof WebhookEventType>;

/** The events the relay emits (docs/webhooks.md "Events"); an endpoint may subscribe to these. */
export const RELAY_WEBHOOK_EVENTS = [
  'contact.opened',
  'participant.joined',
  'message.stored',
  'participant.kicked',
  'participant.left',
  'contact.closed',
  'contact.expired',
] as const satisfies readonly WebhookEventType[];
/**
 * The events the key service emits; an endpoint of its outbox may subscribe to these.
 * `key.accessed`, `key.denied` and `key.destroyed` stream the key access log, one event per
 * record with its chain position (docs/siem.md).
 */
export const KEY_SERVICE_WEBHOOK_EVENTS = [
  'key.rotated',
  'contact.shredded',
  'key.accessed',
  'key.denied',
  'key.destroyed',
] as const satisfies readonly WebhookEventType[];

/** Endpoint ids: `ep_` and 16-32 base64url characters. */
export const WebhookEndpointId = z.string().regex(/^ep_[A-Za-z0-9_-]{8,40}$/, 'not an endpoint id');
/** Event ids (the `webhook-id` header): `evt_` and base64url characters. */
export const WebhookEventId = z.string().regex(/^evt_[A-Za-z0-9_-]{8,60}$/, 'not an event id');

export const WEBHOOK_PATHS = {
  endpoints: `${ADMIN_PREFIX}/webhooks`,
  endpoint: (id: string) => `${ADMIN_PREFIX}/webhooks/${encodeURIComponent(id)}`,
  test: (id: string) => `${ADMIN_PREFIX}/webhooks/${encodeURIComponent(id)}/test`,
  deadLetters: (id: string) => `${ADMIN_PREFIX}/webhooks/${encodeURIComponent(id)}/dead-letters`,
  replay: (id: string) => `${ADMIN_PREFIX}/webhooks/${encodeURIComponent(id)}/replay`,
  rotateSecret: (id: string) => `${ADMIN_PREFIX}/webhooks/${encodeURIComponent(id)}/rotate-secret`,
  retry: (id: string) => `${ADMIN_PREFIX}/webhooks/${encodeURIComponent(id)}/retry`,
} as const;

/** Why a delivery failed; shown in the endpoint's status. */
export const WebhookErrorCode = z.enum([
  'HTTPS_REQUIRED',
  'ADDRESS_REFUSED',
  'DNS_FAILED',
  'CONNECT_FAILED',
  'TLS_NAME_MISMATCH',
  'TLS_EXPIRED',
  'TLS_NOT_YET_VALID',
  'TLS_UNTRUSTED',
  'TLS_FAILED',
  'TIMEOUT',
  'REDIRECT',
  'HTTP_STATUS',
  'BAD_URL',
]);
export type WebhookErrorCode = z.infer<typeof WebhookErrorCode>;

export const WebhookError = z.strictObject({
  code: WebhookErrorCode,
  message: z.string().max(300),
  at: TimeMs,
});
export type WebhookError = z.infer<typeof WebhookError>;

export const WebhookEndpointStatus = z.strictObject({
  /** Events waiting (or being retried) for this endpoint. */
  pending: z.number().int().min(0),
  /** Events given up on: inspect with the dead-letter list, send again with replay. */
  dead: z.number().int().min(0),
  delivered: z.number().int().min(0),
  lastAttemptAt: TimeMs.nullable(),
  lastSuccessAt: TimeMs.nullable(),
  /** The most recent failure; null once a later delivery succeeded. */
  lastError: WebhookError.nullable(),
});
export type WebhookEndpointStatus = z.infer<typeof WebhookEndpointStatus>;

export const WebhookEndpointInfo = z.strictObject({
  id: WebhookEndpointId,
  url: z.string().max(2048),
  /** Event types sent to it; null means all. */
  events: z.array(WebhookEventType).nullable(),
  description: z.string().max(200).nullable(),
  createdAt: TimeMs,
  /** Secrets currently signing (two during a rotation's overlap). */
  secrets: z.number().int().min(1),
  status: WebhookEndpointStatus,
});
export type WebhookEndpointInfo = z.infer<typeof WebhookEndpointInfo>;

/** POST /admin/v1/webhooks */
export const AddWebhookRequest = z.strictObject({
  url: z.string().min(1).max(2048),
  events: z.array(WebhookEventType).min(1).max(WEBHOOK_EVENT_TYPES.length).optional(),
  description: z.string().max(200).optional(),
});
export type AddWebhookRequest = z.infer<typeof AddWebhookRequest>;

/**
 * Why the service cannot deliver to an endpoint's URL as things stand (a loopback or private
 * address not on its webhook allowlist, http off loopback, a name that does not resolve). Added
 * anyway: the allowlist or DNS may change before the first event.
 */
export const WebhookUrlWarning = z.strictObject({
  code: WebhookErrorCode,
  message: z.string().max(300),
});
export type WebhookUrlWarning = z.infer<typeof WebhookUrlWarning>;

/**
 * Answer of add and rotate-secret: the secret is shown once (`whsec_` + base64); `warning` (add
 * only) when deliveries to the URL would be refused now.
 */
export const WebhookSecretResponse = z.strictObject({
  endpoint: WebhookEndpointInfo,
  secret: z.string(),
  warning: WebhookUrlWarning.optional(),
});
export type WebhookSecretResponse = z.infer<typeof WebhookSecretResponse>;

/** POST .../rotate-secret: the old secret keeps signing for `overlapSeconds` (default 86400). */
export const RotateWebhookSecretRequest = z.strictObject({
  overlapSeconds: z
    .number()
    .int()
    .min(0)
    .max(7 * 86400)
    .optional(),
});
export type RotateWebhookSecretRequest = z.infer<typeof RotateWebhookSecretRequest>;

export const ListWebhooksResponse = z.strictObject({ endpoints: z.array(WebhookEndpointInfo) });
export type ListWebhooksResponse = z.infer<typeof ListWebhooksResponse>;

export const WebhookEndpointResponse = z.strictObject({ endpoint: WebhookEndpointInfo });
export type WebhookEndpointResponse = z.infer<typeof WebhookEndpointResponse>;

/** POST .../test: one signed test call, sent at once outside the queue; its outcome. */
export const WebhookTestResponse = z.strictObject({
  ok: z.boolean(),
  status: z.number().int().nullable(),
  error: WebhookError.nullable(),
});
export type WebhookTestResponse = z.infer<typeof WebhookTestResponse>;

export const DeadLetter = z.strictObject({
  eventId: WebhookEventId,
  /** The event's per-endpoint sequence number (the `sequence` of its body). */
  sequence: z.number().int().min(1),
  type: z.string(),
  createdAt: TimeMs,
  attempts: z.number().int().min(0),
  deadAt: TimeMs,
  lastError: WebhookError.nullable(),
});
export type DeadLetter = z.infer<typeof DeadLetter>;

export const DeadLettersResponse = z.strictObject({ deadLetters: z.array(DeadLetter) });
export type DeadLettersResponse = z.infer<typeof DeadLettersResponse>;

/** POST .../replay: the named dead letters (default: all of the endpoint) go back in the queue. */
export const ReplayWebhookRequest = z.strictObject({
  eventIds: z.array(WebhookEventId).max(1000).optional(),
});
export type ReplayWebhookRequest = z.infer<typeof ReplayWebhookRequest>;

export const ReplayWebhookResponse = z.strictObject({ replayed: z.number().int().min(0) });
export type ReplayWebhookResponse = z.infer<typeof ReplayWebhookResponse>;

/**
 * POST .../retry: every pending delivery of the endpoint is due now (its backoff skipped) and
 * every dead letter goes back in the queue; counts of each.
 */
export const RetryWebhookResponse = z.strictObject({
  pending: z.number().int().min(0),
  dead: z.number().int().min(0),
});
export type RetryWebhookResponse = z.infer<typeof RetryWebhookResponse>;
