/**
 * WebSocket frames between client and relay, as JSON text frames. Each side `safeParse`s every
 * frame it receives with these schemas. Flow: the client sends `auth` first (within
 * LIMITS.authTimeoutSeconds), the relay answers `ready`; `join` subscribes to live delivery and
 * replays everything after `since`; `send` is answered by `ack` once the envelope is durable.
 */
import { z } from 'zod';
import { ERROR_CODE_LIST } from './codes.ts';
import { SealedEnvelope, StoredEnvelope } from './envelope.ts';
import { Id, MsgId, Role, SeqCursor } from './primitives.ts';
import { SealedSignal } from './signals.ts';
import { LIMITS, PROTOCOL_VERSION } from './version.ts';

const V = z.literal(PROTOCOL_VERSION);
/** Request id chosen by the client to match a reply to its request. */
export const RequestId = z.string().regex(/^[A-Za-z0-9_-]{1,32}$/);

export const AuthFrame = z.strictObject({
  v: V,
  type: z.literal('auth'),
  token: z.string().min(1).max(4096),
});
export const JoinFrame = z.strictObject({ v: V, type: z.literal('join'), since: SeqCursor });
export const SendFrame = z.strictObject({
  v: V,
  type: z.literal('send'),
  envelope: SealedEnvelope,
});
export const HistoryRequestFrame = z.strictObject({
  v: V,
  type: z.literal('history'),
  id: RequestId,
  since: SeqCursor,
  limit: z.number().int().min(1).max(LIMITS.maxHistoryPage).optional(),
});
export const PingFrame = z.strictObject({
  v: V,
  type: z.literal('ping'),
  id: RequestId.optional(),
});

/** An ephemeral sealed signal (typing, seen) for the other connected members; never stored. */
export const SignalFrame = z.strictObject({
  v: V,
  type: z.literal('signal'),
  /** Echoed in the `ref` of an error answering this frame (told apart from a send's). */
  id: RequestId.optional(),
  signal: SealedSignal,
});

export const ClientFrame = z.discriminatedUnion('type', [
  AuthFrame,
  JoinFrame,
  SendFrame,
  HistoryRequestFrame,
  PingFrame,
  SignalFrame,
]);
export type ClientFrame = z.infer<typeof ClientFrame>;

export const ReadyFrame = z.strictObject({
  v: V,
  type: z.literal('ready'),
  contactId: Id,
  participantId: Id,
  role: Role,
  /** Highest seq stored for the contact at the time of auth (0: none). */
  head: SeqCursor,
  maxFrameBytes: z.number().int().positive(),
});
export const JoinedFrame = z.strictObject({ v: V, type: z.literal('joined'), head: SeqCursor });
export const AckFrame = z.strictObject({
  v: V,
  type: z.literal('ack'),
  msgId: MsgId,
  seq: z.number().int().min(1),
  /** True when this msgId was already stored: the original seq is returned. */
  duplicate: z.boolean(),
});
export const DeliverFrame = z.strictObject({
  v: V,
  type: z.literal('deliver'),
  envelope: StoredEnvelope,
});
export const HistoryFrame = z.strictObject({
  v: V,
  type: z.literal('history'),
  id: RequestId,
  envelopes: z.array(StoredEnvelope).max(LIMITS.maxHistoryPage),
  head: SeqCursor,
  more: z.boolean(),
});
export const ErrorFrame = z.strictObject({
  v: V,
  type: z.literal('error'),
  code: z.enum(ERROR_CODE_LIST),
  message: z.string().max(200),
  /** The request this error answers, when there is one. */
  ref: z.strictObject({ msgId: MsgId.optional(), id: RequestId.optional() }).optional(),
});
export const PongFrame = z.strictObject({
  v: V,
  type: z.literal('pong'),
  id: RequestId.optional(),
});
/**
 * The contact's membership changed (kick, transfer) and the key service rotated its key. Only a
 * hint, unauthenticated: clients then fetch the signed epoch statement from the key service and
 * trust that alone (a relay that suppresses it gains at most FRESHNESS.maxAgeMs).
 */
export const RekeyFrame = z.strictObject({ v: V, type: z.literal('rekey') });

/** A signal forwarded by the relay; `from` is the sender's participant id as authenticated. */
export const SignalDeliverFrame = z.strictObject({
  v: V,
  type: z.literal('signal'),
  from: Id,
  signal: SealedSignal,
});

export const ServerFrame = z.discriminatedUnion('type', [
  ReadyFrame,
  JoinedFrame,
  AckFrame,
  DeliverFrame,
  HistoryFrame,
  ErrorFrame,
  PongFrame,
  RekeyFrame,
  SignalDeliverFrame,
]);
export type ServerFrame = z.infer<typeof ServerFrame>;

export type AuthFrame = z.infer<typeof AuthFrame>;
export type JoinFrame = z.infer<typeof JoinFrame>;
export type SendFrame = z.infer<typeof SendFrame>;
export type HistoryRequestFrame = z.infer<typeof HistoryRequestFrame>;
export type ReadyFrame = z.infer<typeof ReadyFrame>;
export type AckFrame = z.infer<typeof AckFrame>;
export type DeliverFrame = z.infer<typeof DeliverFrame>;
export type HistoryFrame = z.infer<typeof HistoryFrame>;
export type ErrorFrame = z.infer<typeof ErrorFrame>;
export type RekeyFrame = z.infer<typeof RekeyFrame>;
export type SignalFrame = z.infer<typeof SignalFrame>;
export type SignalDeliverFrame = z.infer<typeof SignalDeliverFrame>;
