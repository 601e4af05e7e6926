/**
 * The client's outbox store (docs/guarantees.md "Client outbox"): sealed envelopes that were
 * sent but not yet acknowledged, kept so that a reconnect, a restart or a page reload sends them
 * once, in order. Only sealed envelopes are stored, never plaintext; the client opens them again
 * with the contact's key to show them. `MemoryOutbox` is the default (survives reconnects of one
 * client object); `IndexedDbOutbox` (indexeddb-outbox.ts) survives a page reload.
 */
import type { SealedEnvelope } from '@latchkey/protocol';

/** Where unacknowledged sealed envelopes wait. Implementations keep insertion order. */
export interface OutboxStore {
  /** The pending envelopes of one participant of one contact, oldest first. */
  load(contactId: string, participantId: string): Promise<SealedEnvelope[]>;
  /** Records an envelope before it is sent. */
  put(envelope: SealedEnvelope): Promise<void>;
  /** Forgets an envelope once the relay acknowledged (or finally refused) it. */
  delete(contactId: string, msgId: string): Promise<void>;
}

/** The in-memory default: lives as long as the object. */
export class MemoryOutbox implements OutboxStore {
  readonly #items = new Map<string, SealedEnvelope>();

  load(contactId: string, participantId: string): Promise<SealedEnvelope[]> {
    return Promise.resolve(
      [...this.#items.values()].filter(
        (e) => e.contactId === contactId && e.senderId === participantId,
      ),
    );
  }

  put(envelope: SealedEnvelope): Promise<void> {
    this.#items.set(`${envelope.contactId}\u0000${envelope.msgId}`, envelope);
    return Promise.resolve();
  }

  delete(contactId: string, msgId: string): Promise<void> {
    this.#items.delete(`${contactId}\u0000${msgId}`);
    return Promise.resolve();
  }
}
