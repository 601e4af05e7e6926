/**
 * @latchkey/protocol: the single definition of every wire format (zod schemas), the protocol
 * version, size limits and error codes. Relay, key service and clients all import from here.
 */
export { PROTOCOL_VERSION, ENVELOPE_ALG, ENVELOPE_VERSION, LIMITS } from './version.ts';
export {
  ERROR_CODES,
  ERROR_CODE_LIST,
  WS_CLOSE_POLICY,
  WS_CLOSE_NORMAL,
  WS_CLOSE_GOING_AWAY,
  type ErrorCode,
} from './codes.ts';
export { LatchkeyError, toLatchkeyError } from './errors.ts';
export {
  Id,
  MsgId,
  Epoch,
  Seq,
  SeqCursor,
  TimeMs,
  Role,
  SENDING_ROLES,
  ENVELOPE_ROLES,
  b64url,
  b64urlBytes,
} from './primitives.ts';
export { CERT_ALG, CertificateBody, SenderCertificate } from './certificate.ts';
export {
  STATEMENT_ALG,
  STATEMENT_CONTEXT,
  STATEMENT_MAX_EPOCHS,
  STATEMENT_MAX_MEMBERS,
  FRESHNESS,
  EpochStatementBody,
  EpochStatement,
} from './epoch-statement.ts';
export { EnvelopeHeader, SealedEnvelope, StoredEnvelope, MessageBody } from './envelope.ts';
export * from './files.ts';
export * from './frames.ts';
export * from './signals.ts';
export {
  TOKEN_ISSUER,
  AUDIENCE_RELAY,
  AUDIENCE_KEYS,
  MAX_TOKEN_TTL_SECONDS,
  TOKEN_ALGORITHMS,
  TokenClaims,
  type TokenAlgorithm,
  type Principal,
} from './token.ts';
export {
  ContactState,
  ParticipantState,
  ContactInfo,
  ParticipantInfo,
  DEFAULT_MAX_PARTICIPANTS,
  DEFAULT_CONTACT_TTL_MS,
  effectiveState,
  decideAdmission,
  type AdmissionInput,
  type AdmissionDecision,
} from './membership.ts';
export {
  ADMIN_PREFIX,
  ADMIN_PATHS,
  ListContactsQuery,
  ListContactsResponse,
  CloseContactRequest,
  SetExpiryRequest,
  KickRequest,
  InviteRequest,
  TransferRequest,
  ContactResponse,
  ShredRequest,
  ShredResponse,
  RewrapRequest,
  RewrapResponse,
  ShredCompleteRequest,
  ShredCompleteResponse,
} from './admin.ts';
export * from './queue.ts';
export {
  KEYS_PATHS,
  ContactKeyRequest,
  ContactKeyResponse,
  EpochStatementResponse,
  KeyDeliverySuite,
  DeliveryKey,
  SealedKey,
  keyDeliveryInfo,
  ServiceKeyResponse,
  HealthResponse,
  ErrorResponse,
} from './http.ts';
export { parseJson, parseRequest } from './parse.ts';
export { isLoopbackHost, assertSecureListener, InsecureListenerError } from './transport.ts';
export {
  WEBHOOK_EVENT_TYPES,
  RELAY_WEBHOOK_EVENTS,
  KEY_SERVICE_WEBHOOK_EVENTS,
  WEBHOOK_PATHS,
  WebhookEventType,
  WebhookEndpointId,
  WebhookEventId,
  WebhookErrorCode,
  WebhookError,
  WebhookEndpointStatus,
  WebhookEndpointInfo,
  AddWebhookRequest,
  WebhookSecretResponse,
  RotateWebhookSecretRequest,
  ListWebhooksResponse,
  WebhookEndpointResponse,
  WebhookTestResponse,
  DeadLetter,
  DeadLettersResponse,
  ReplayWebhookRequest,
  ReplayWebhookResponse,
  RetryWebhookResponse,
  WebhookUrlWarning,
} from './webhooks.ts';
export * from './key-manager-api.ts';
export { backoffDelay, type BackoffOptions } from './backoff.ts';
export { findTlsFailure, tlsFailureKind, type TlsFailureKind } from './tls-errors.ts';
