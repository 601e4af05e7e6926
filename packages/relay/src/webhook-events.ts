/**
 * Which webhook events the relay emits, and when (docs/webhooks.md): small helpers so that each
 * place in handlers.ts, moderation.ts and admin-api.ts stays a one-line call. Events carry ids,
 * counts and times only; `emit` queues durably in the outbox and never throws.
 */
import type { ContactInfo, StoredEnvelope } from '@latchkey/protocol';
import type { WebhookService } from '@latchkey/webhooks';

/**
 * After an admission at `at`: `contact.opened` when it created the contact, and
 * `participant.joined` when it admitted the participant for the first time.
 */
export function emitAdmission(
  hooks: WebhookService | undefined,
  info: ContactInfo,
  participantId: string,
  at: number,
): void {
  if (!hooks) return;
  if (info.createdAt === at) hooks.emit('contact.opened', { contactId: info.contactId, time: at });
  const p = info.participants.find((x) => x.participantId === participantId);
  if (p && p.role !== null && p.state === 'active' && p.joinedAt === at) {
    hooks.emit('participant.joined', {
      contactId: info.contactId,
      participantId,
      role: p.role,
      time: at,
    });
  }
}

/** After a stored (not duplicate) envelope: its metadata; `size` is the ciphertext's bytes. */
export function emitMessageStored(
  hooks: WebhookService | undefined,
  env: StoredEnvelope,
  at: number,
): void {
  hooks?.emit('message.stored', {
    contactId: env.contactId,
    seq: env.seq,
    senderId: env.senderId,
    size: Math.floor((env.ciphertext.length * 3) / 4),
    time: at,
  });
}
