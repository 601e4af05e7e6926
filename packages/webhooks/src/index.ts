/**
 * @latchkey/webhooks: signed webhooks (Standard Webhooks) with a durable outbox (SQLite for one
 * process, PostgreSQL shared by several: each event delivered once by whichever is alive), a
 * delivery worker that refuses unsafe targets, and a verification helper for Node receivers.
 * See docs/webhooks.md.
 */
export { generateSecret, secretKey, signatureFor, signWebhook, SECRET_PREFIX } from './signing.ts';
export {
  createWebhookVerifier,
  verifyWebhook,
  createReplayGuard,
  WebhookVerificationError,
  type ReplayGuard,
  type VerifyOptions,
} from './verify.ts';
export { EVENT_DATA, WebhookPayload, TEST_EVENT_TYPE, type EventData } from './events.ts';
export {
  WebhookOutbox,
  OUTBOX_SCHEMA_VERSION,
  DEFAULT_RETRY,
  type OutboxOptions,
  type RetryPolicy,
  type DueDelivery,
  type WebhookOutboxStore,
} from './outbox.ts';
export { PgWebhookOutbox, type PgOutboxOptions } from './outbox-pg.ts';
export { PG_OUTBOX_SCHEMA_VERSION } from './outbox-pg-schema.ts';
export { WebhookOutboxKeyError, type OutboxKeyProblem } from './outbox-key-error.ts';
export {
  deliver,
  resolveTarget,
  classifyError,
  type DeliveryOptions,
  type DeliveryResult,
  type DeliveryFailure,
} from './deliver.ts';
export { isSpecialAddress, isLoopbackAddress, addressAllowlist } from './_address.ts';
export {
  WebhookService,
  type WebhookServiceOptions,
  type WebhookLogEvent,
  type Timers,
} from './service.ts';
export {
  handleWebhookAdmin,
  isWebhookAdminPath,
  type WebhookAdminRequest,
  type WebhookAdminAnswer,
  type WebhookAdminLog,
  type WebhookAdminService,
} from './admin-routes.ts';
