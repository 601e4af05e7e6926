/**
 * Restoring the outbox (docs/protocol.md "Ordering and resumption"): what an earlier session left
 * in the outbox store for this contact and participant is opened locally (it must verify as our
 * own), emitted as `pending`, and queued ahead of anything new. An envelope that no longer opens
 * is dropped from the store; a store that refuses to load restores nothing.
 */
import type { SealedEnvelope, StoredEnvelope } from '@latchkey/protocol';
import type { Identity } from './key-session.ts';
import type { Opened } from './open.ts';
import type { OutboxStore } from './outbox.ts';
import type { SendQueue } from './send-queue.ts';
import type { PendingMessage } from './options.ts';

export interface RestoreDeps {
  store: OutboxStore;
  queue: Pick<SendQueue, 'msgIds' | 'prepend'>;
  open(env: StoredEnvelope): Promise<Opened>;
  pending(m: PendingMessage): void;
}

/** Loads, checks, announces and queues what an earlier session of `id` left unacknowledged. */
export async function restoreOutbox(d: RestoreDeps, id: Identity): Promise<void> {
  let stored: SealedEnvelope[];
  try {
    stored = await d.store.load(id.contactId, id.participantId);
  } catch {
    return; // storage refused: nothing to restore
  }
  const known = d.queue.msgIds();
  const restored: { envelope: SealedEnvelope; text: string; plaintext: Uint8Array }[] = [];
  for (const envelope of stored) {
    if (known.has(envelope.msgId)) continue;
    const own = await openOwn(d, envelope, id);
    if (own === null) {
      await d.store.delete(envelope.contactId, envelope.msgId).catch(() => undefined);
      continue;
    }
    known.add(envelope.msgId);
    restored.push({ envelope, ...own });
    d.pending({ msgId: envelope.msgId, sentAt: envelope.sentAt, text: own.text });
  }
  d.queue.prepend(restored);
}

/** Opens an own envelope from the outbox store; null when it is not ours or does not open. */
async function openOwn(
  d: RestoreDeps,
  env: SealedEnvelope,
  id: Identity,
): Promise<{ text: string; plaintext: Uint8Array } | null> {
  if (env.contactId !== id.contactId || env.senderId !== id.participantId) return null;
  const opened = await d.open({ ...env, seq: 1 });
  return opened.ok ? { text: opened.text, plaintext: opened.plaintext } : null;
}
