/**
 * What an `appendBatch` does, decided once for every message store (store.ts, pg-store.ts): per
 * envelope in order, a duplicate or a taken msgId, a contact that takes no more messages, a
 * sender that left, a quota it would exceed, else the next seq. The store reads what the plan
 * asks for inside its transaction (after locking the batch's contacts, on PostgreSQL) and then
 * writes what the plan returns, in the same transaction, so a batch is all-or-nothing.
 */
import {
  effectiveState,
  type ContactState,
  type ParticipantState,
  type SealedEnvelope,
} from '@latchkey/protocol';
import { canonicalJson, toStored } from './envelope-json.ts';
import type { AppendResult } from './message-store.ts';
import { overQuota, type Quota, type Usage } from './quota.ts';

/** What the plan reads of the store, as it was before the batch. */
export interface AppendView {
  /** The stored envelope with this msgId in the contact, if any. */
  prior(
    contactId: string,
    msgId: string,
  ): { seq: number; senderId: string; json: string } | undefined;
  /** The contact's row, or undefined when the batch would create it. */
  contact(
    contactId: string,
  ): { state: ContactState; expiresAt: number; head: number; usage: Usage } | undefined;
  /** The sender's membership state in the contact, if it was ever seen there. */
  senderState(contactId: string, senderId: string): ParticipantState | undefined;
  /** What the sender has stored in the contact, if anything. */
  senderUsage(contactId: string, senderId: string): Usage | undefined;
}

/** One message to insert. */
export interface PlannedMessage {
  contactId: string;
  seq: number;
  msgId: string;
  senderId: string;
  epoch: number;
  sentAt: number;
  json: string;
  bytes: number;
}

export interface AppendPlan {
  results: AppendResult[];
  messages: PlannedMessage[];
  /** Per contact appended to: its new head, whether the batch creates it, what it adds. */
  contacts: Map<string, { head: number; created: boolean } & Usage>;
  /** Per contact and sender appended: what it adds. */
  senders: { contactId: string; senderId: string; messages: number; bytes: number }[];
}

const ZERO: Usage = { messages: 0, bytes: 0 };

/** Decides a batch against `view` (read lazily, each row once). */
export function planAppend(
  envelopes: readonly SealedEnvelope[],
  view: AppendView,
  now: number,
  quota: Quota | undefined,
): AppendPlan {
  const once = <K, V>(cache: Map<K, V>, key: K, read: () => V): V => {
    if (!cache.has(key)) cache.set(key, read());
    return cache.get(key) as V;
  };
  const contactRows = new Map<string, ReturnType<AppendView['contact']>>();
  const senderRows = new Map<string, ParticipantState | undefined>();
  const contactUsage = new Map<string, Usage>();
  const senderUsage = new Map<string, Usage>();
  const added = new Map<string, { seq: number; senderId: string; json: string }>();
  const plan: AppendPlan = { results: [], messages: [], contacts: new Map(), senders: [] };
  const senders = new Map<string, AppendPlan['senders'][number]>();
  for (const e of envelopes) {
    const json = canonicalJson(e);
    const msgKey = `${e.contactId}\n${e.msgId}`;
    const prior = added.get(msgKey) ?? view.prior(e.contactId, e.msgId);
    if (prior) {
      plan.results.push(
        prior.senderId === e.senderId && prior.json === json
          ? {
              ok: true,
              seq: prior.seq,
              duplicate: true,
              envelope: toStored(prior.json, prior.seq),
              json: prior.json,
            }
          : { ok: false, code: 'CONFLICT' },
      );
      continue;
    }
    const contact = once(contactRows, e.contactId, () => view.contact(e.contactId));
    const senderKey = `${e.contactId}\n${e.senderId}`;
    if (contact) {
      const state = effectiveState({ state: contact.state, expiresAt: contact.expiresAt }, now);
      if (state !== 'open') {
        plan.results.push({
          ok: false,
          code: state === 'closed' ? 'CONTACT_CLOSED' : 'CONTACT_EXPIRED',
        });
        continue;
      }
      const sender = once(senderRows, senderKey, () => view.senderState(e.contactId, e.senderId));
      if (sender !== undefined && sender !== 'active') {
        plan.results.push({ ok: false, code: 'FORBIDDEN' });
        continue;
      }
    }
    const bytes = Buffer.byteLength(json);
    const cu = once(contactUsage, e.contactId, () => ({ ...(contact?.usage ?? ZERO) }));
    const su = once(senderUsage, senderKey, () => ({
      ...(view.senderUsage(e.contactId, e.senderId) ?? ZERO),
    }));
    if (quota && overQuota(quota, cu, su, bytes)) {
      plan.results.push({ ok: false, code: 'QUOTA_EXCEEDED' });
      continue;
    }
    for (const u of [cu, su]) {
      u.messages++;
      u.bytes += bytes;
    }
    let c = plan.contacts.get(e.contactId);
    if (!c) {
      c = { head: contact?.head ?? 0, created: !contact, messages: 0, bytes: 0 };
      plan.contacts.set(e.contactId, c);
    }
    let s = senders.get(senderKey);
    if (!s) {
      s = { contactId: e.contactId, senderId: e.senderId, messages: 0, bytes: 0 };
      senders.set(senderKey, s);
      plan.senders.push(s);
    }
    for (const u of [c, s]) {
      u.messages++;
      u.bytes += bytes;
    }
    const seq = ++c.head;
    added.set(msgKey, { seq, senderId: e.senderId, json });
    plan.messages.push({
      contactId: e.contactId,
      seq,
      msgId: e.msgId,
      senderId: e.senderId,
      epoch: e.epoch,
      sentAt: e.sentAt,
      json,
      bytes,
    });
    // The input was validated by the protocol schema (no extra fields): no need to re-parse.
    plan.results.push({ ok: true, seq, duplicate: false, envelope: { ...e, seq }, json });
  }
  return plan;
}
