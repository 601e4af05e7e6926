/**
 * Contact lifecycle and membership rules (issue 4), shared by the relay's contact store and the
 * key service's access table so that both decide alike. Pure: the caller passes the clock.
 *
 * Lifecycle: `open` -> `closed` (no more sends, history stays readable) -> `expired` (no access
 * at all; what retention then does with data and keys is the retention hook's business). A
 * contact whose `expiresAt` has passed counts as expired whatever its stored state.
 *
 * Membership: a participant is admitted on first use of a valid token (or ahead of it by an
 * invite) while the contact has fewer than `maxParticipants` active members; a participant who
 * `left` (transfer) or was `kicked` is refused for that contact from then on, whatever token it
 * presents. A participant keeps the role it was admitted with.
 */
import { z } from 'zod';
import type { ErrorCode } from './codes.ts';
import { Id, Role, TimeMs } from './primitives.ts';

export const ContactState = z.enum(['open', 'closed', 'expired']);
export type ContactState = z.infer<typeof ContactState>;

export const ParticipantState = z.enum(['active', 'left', 'kicked']);
export type ParticipantState = z.infer<typeof ParticipantState>;

/** Active participants a contact may have unless configured otherwise. */
export const DEFAULT_MAX_PARTICIPANTS = 10;
/** Lifetime of a contact from its creation unless configured or set otherwise (30 days). */
export const DEFAULT_CONTACT_TTL_MS = 30 * 24 * 60 * 60 * 1000;

export const ParticipantInfo = z.strictObject({
  participantId: Id,
  /** null for a participant kicked before it ever joined (a deny entry). */
  role: Role.nullable(),
  state: ParticipantState,
  joinedAt: TimeMs,
  /** When it left or was kicked; null while active. */
  leftAt: TimeMs.nullable(),
});
export type ParticipantInfo = z.infer<typeof ParticipantInfo>;

export const ContactInfo = z.strictObject({
  contactId: Id,
  state: ContactState,
  createdAt: TimeMs,
  closedAt: TimeMs.nullable(),
  expiresAt: TimeMs,
  participants: z.array(ParticipantInfo).max(10_000),
});
export type ContactInfo = z.infer<typeof ContactInfo>;

/** The state a contact is in at `now`: a passed expiry wins over the stored state. */
export function effectiveState(
  contact: { state: ContactState; expiresAt: number },
  now: number,
): ContactState {
  return contact.state === 'expired' || contact.expiresAt <= now ? 'expired' : contact.state;
}

export interface AdmissionInput {
  /** The contact as stored, or null when it does not exist yet. */
  contact: { state: ContactState; expiresAt: number } | null;
  /** The participant as stored, or null when it was never admitted. */
  participant: { role: Role | null; state: ParticipantState } | null;
  /** Active participants of the contact now. */
  activeCount: number;
  /** The role the token names. */
  role: Role;
  now: number;
  maxParticipants: number;
}

export type AdmissionDecision =
  | { ok: true; createContact: boolean; createParticipant: boolean }
  | { ok: false; code: ErrorCode; message: string };

/**
 * Whether a token holder may enter a contact. Refusals: CONTACT_EXPIRED, FORBIDDEN (left,
 * kicked, or a role other than the one admitted), CONTACT_FULL (the limit of active members).
 */
export function decideAdmission(i: AdmissionInput): AdmissionDecision {
  if (i.contact && effectiveState(i.contact, i.now) === 'expired') {
    return { ok: false, code: 'CONTACT_EXPIRED', message: 'contact expired' };
  }
  if (i.participant) {
    if (i.participant.state !== 'active') {
      return { ok: false, code: 'FORBIDDEN', message: 'participant removed from this contact' };
    }
    if (i.participant.role !== i.role) {
      return { ok: false, code: 'FORBIDDEN', message: 'role differs from the admitted role' };
    }
    return { ok: true, createContact: false, createParticipant: false };
  }
  if (i.activeCount >= i.maxParticipants) {
    return { ok: false, code: 'CONTACT_FULL', message: 'participant limit reached' };
  }
  return { ok: true, createContact: i.contact === null, createParticipant: true };
}
