/**
 * Webhook event payloads (docs/webhooks.md). The body of each call is
 * `{"type","timestamp","sequence","data"}` as Standard Webhooks suggests, plus `sequence`: the
 * event's number for this endpoint (1, 2, 3, ... with no gap; docs/webhooks.md "Order and
 * gaps"), inside the signed body. `data` carries ids, counts and times only. Every schema is strict, so no field outside this list (a ciphertext, a text, a
 * name) can ever be emitted.
 */
import { z } from 'zod';
import { Epoch, Id, Role, Seq, TimeMs, WebhookEventType } from '@latchkey/protocol';

const contact = { contactId: Id, time: TimeMs };
/** Hex of a SHA-256 / HMAC-SHA256 value. */
const Hash = z.string().regex(/^[0-9a-f]{64}$/);
/**
 * One record of the key access log with its chain position (docs/siem.md "Verifying the
 * chain"): `hash = H(prevHash || encoding)`, H per `alg`. For `key.destroyed`, `participantId`
 * names who destroyed (`admin` or `retention`) and `epoch` the newest epoch destroyed.
 */
const accessRecord = <O extends readonly [string, ...string[]]>(outcomes: O) =>
  z.strictObject({
    contactId: Id,
    epoch: Epoch,
    participantId: Id,
    time: TimeMs,
    outcome: z.enum(outcomes),
    chain: z.strictObject({
      seq: z.number().int().min(1),
      hash: Hash,
      prevHash: Hash,
      alg: z.enum(['hmac-sha256', 'sha256']),
    }),
  });
const participant = { contactId: Id, participantId: Id, time: TimeMs };

export const EVENT_DATA = {
  'contact.opened': z.strictObject(contact),
  'contact.closed': z.strictObject(contact),
  'contact.expired': z.strictObject(contact),
  'contact.shredded': z.strictObject(contact),
  'participant.joined': z.strictObject({ ...participant, role: Role }),
  'participant.left': z.strictObject(participant),
  'participant.kicked': z.strictObject(participant),
  /** Metadata of a stored message: never its ciphertext, nonce or signature. */
  'message.stored': z.strictObject({
    contactId: Id,
    seq: Seq,
    senderId: Id,
    /** Size of the ciphertext in bytes. */
    size: z.number().int().min(0),
    time: TimeMs,
  }),
  'key.rotated': z.strictObject({ contactId: Id, epoch: Epoch, time: TimeMs }),
  'key.accessed': accessRecord(['granted'] as const),
  'key.denied': accessRecord(['denied', 'unavailable'] as const),
  'key.destroyed': accessRecord(['destroyed'] as const),
} as const satisfies Record<WebhookEventType, z.ZodType>;

export type EventData<T extends WebhookEventType> = z.infer<(typeof EVENT_DATA)[T]>;

/** The JSON body of one webhook call. */
export const WebhookPayload = z.discriminatedUnion(
  'type',
  WebhookEventType.options.map((type) =>
    z.strictObject({
      type: z.literal(type),
      timestamp: z.iso.datetime(),
      sequence: z.number().int().min(1),
      data: EVENT_DATA[type],
    }),
  ) as unknown as [z.ZodObject, ...z.ZodObject[]],
);
export type WebhookPayload = {
  [T in WebhookEventType]: { type: T; timestamp: string; sequence: number; data: EventData<T> };
}[WebhookEventType];

/**
 * Test calls (admin "test") carry this type, `data: {endpointId}` and no `sequence`: they never
 * enter the queue, so they take no number.
 */
export const TEST_EVENT_TYPE = 'webhook.test' as const;
