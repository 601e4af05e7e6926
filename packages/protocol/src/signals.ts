/**
 * Signals (docs/protocol.md "Signals: typing and seen"): ephemeral, end-to-end sealed statements
 * a member sends to the other connected members of its contact through the relay — "I am typing",
 * "I have read up to seq N" and "my client has received up to seq N". The relay forwards them and never stores them; it sees that a
 * signal was sent, its size and its time, never its kind or content.
 *
 * On the wire a signal is `{ epoch, nonce, ciphertext, sig, cert }`: AES-256-GCM under the
 * contact's content key at `epoch` with additional data binding contact, epoch and sender under
 * the domain 'latchkey.v1.signal' (@latchkey/crypto/signal), signed by the sender's certified
 * session key (context 'latchkey.v1.sigsig'), with the sender certificate so that a receiver
 * knows who sent it. The plaintext is a {@link SignalBody} as UTF-8 JSON.
 */
import { z } from 'zod';
import { SenderCertificate } from './certificate.ts';
import { Epoch, SeqCursor, TimeMs, b64url, b64urlBytes, type Role } from './primitives.ts';

/** Limits of signals. */
export const SIGNAL_LIMITS = {
  /** Largest signal plaintext (bytes, UTF-8 JSON). */
  maxPlaintextBytes: 128,
  /** Largest serialized client signal frame the relay forwards (bytes). */
  maxFrameBytes: 2048,
  /** Sustained signals per second per connection, and the burst, at the relay. */
  perSecond: 5,
  burst: 10,
  /** A receiver drops a signal sent longer ago than this, or this far in the future (ms). */
  maxAgeMs: 30_000,
  /** A typing indicator expires this long after the last start without a refresh (ms). */
  typingExpiryMs: 6_000,
  /** A client sends at most one typing start per this interval (ms). */
  typingThrottleMs: 3_000,
} as const;

/** The sealed signal as it travels (both directions). */
export const SealedSignal = z.strictObject({
  epoch: Epoch,
  nonce: b64urlBytes(12),
  /** `ciphertext || tag` of at most maxPlaintextBytes plaintext (16..144 bytes). */
  ciphertext: b64url(22, 192),
  sig: b64urlBytes(64),
  cert: SenderCertificate,
});
export type SealedSignal = z.infer<typeof SealedSignal>;

/** The opened content of a signal. `sentAt` (sender's clock, ms) bounds replays. */
export const TypingSignal = z.strictObject({
  kind: z.literal('typing'),
  state: z.enum(['start', 'stop']),
  sentAt: TimeMs,
});
/** A signed statement: the sender has read every message up to `seq`. */
export const SeenSignal = z.strictObject({
  kind: z.literal('seen'),
  seq: SeqCursor,
  sentAt: TimeMs,
});
/** A signed statement: the sender's client has received every message up to `seq`. */
export const DeliveredSignal = z.strictObject({
  kind: z.literal('delivered'),
  seq: SeqCursor,
  sentAt: TimeMs,
});
export const SignalBody = z.discriminatedUnion('kind', [TypingSignal, SeenSignal, DeliveredSignal]);
export type SignalBody = z.infer<typeof SignalBody>;
export type TypingSignal = z.infer<typeof TypingSignal>;
export type SeenSignal = z.infer<typeof SeenSignal>;
export type DeliveredSignal = z.infer<typeof DeliveredSignal>;

/** Roles that may send each kind: typing only the message senders, receipts every reader but a scanner. */
export const SIGNAL_ROLES: Record<SignalBody['kind'], ReadonlySet<Role>> = {
  typing: new Set<Role>(['visitor', 'agent']),
  seen: new Set<Role>(['visitor', 'agent', 'supervisor']),
  delivered: new Set<Role>(['visitor', 'agent', 'supervisor']),
};
