/**
 * Epoch statement (DESIGN.md "Trust and tokens"; docs/protocol.md "Epoch statement"): the key
 * service's signed record of a contact's current epoch and members. Clients trust membership and
 * epochs only from these, never from the relay (whose `rekey` frame is only a hint). The body
 * travels as the exact JSON bytes the key service signed (base64url), like a sender certificate,
 * signed with the context 'latchkey.v1.epoch-statement' by the same service key.
 */
import { z } from 'zod';
import { Epoch, Id, Role, TimeMs, b64url, b64urlBytes } from './primitives.ts';

export const STATEMENT_ALG = 'latchkey.v1.epoch-statement' as const;
/** Signature context of epoch statements. */
export const STATEMENT_CONTEXT = 'latchkey.v1.epoch-statement' as const;

/** Most recent epochs whose start a statement lists. */
export const STATEMENT_MAX_EPOCHS = 64;
/** Most members and removed participants a statement lists. */
export const STATEMENT_MAX_MEMBERS = 1000;

/**
 * Freshness rules every client applies (documented in docs/threat-model.md):
 * - a client seals only under a statement it received at most `maxAgeMs` ago by its own clock,
 *   else it asks the key service first;
 * - clocks may differ by up to `clockSkewMs` (the same tolerance tokens get);
 * - a message sealed under an epoch more than `graceMs` after that epoch was superseded is shown
 *   as STALE_EPOCH, and one signed by a removed participant after its removal as SENDER_REMOVED.
 */
export const FRESHNESS = {
  maxAgeMs: 10_000,
  clockSkewMs: 30_000,
  graceMs: 40_000,
} as const;

export const EpochStatementBody = z.strictObject({
  v: z.literal(1),
  alg: z.literal(STATEMENT_ALG),
  contactId: Id,
  /** The contact's current epoch. */
  epoch: Epoch,
  /** When recent epochs began, ascending, the current one last (at most STATEMENT_MAX_EPOCHS). */
  epochs: z.array(z.strictObject({ epoch: Epoch, since: TimeMs })).max(STATEMENT_MAX_EPOCHS),
  /** Active members. */
  members: z.array(z.strictObject({ participantId: Id, role: Role })).max(STATEMENT_MAX_MEMBERS),
  /** Participants who left (transfer) or were kicked, and when. */
  removed: z.array(z.strictObject({ participantId: Id, at: TimeMs })).max(STATEMENT_MAX_MEMBERS),
  /** When the key service signed it (its clock). */
  issuedAt: TimeMs,
});
export type EpochStatementBody = z.infer<typeof EpochStatementBody>;

export const EpochStatement = z.strictObject({
  /** base64url of the UTF-8 JSON of an EpochStatementBody, exactly as signed. */
  body: b64url(1, 200_000),
  /** Ed25519 signature by the key service over the context string and the body bytes. */
  sig: b64urlBytes(64),
});
export type EpochStatement = z.infer<typeof EpochStatement>;
