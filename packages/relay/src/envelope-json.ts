/**
 * The stored form of a sealed envelope, shared by every message store: canonical JSON text in,
 * the envelope with its seq out. The store never interprets the ciphertext.
 */
import type { SealedEnvelope, StoredEnvelope } from '@latchkey/protocol';

/**
 * The sealed envelope as canonical JSON (fixed key order), so that a retried send compares
 * equal byte for byte whatever key order the client used.
 */
export function canonicalJson(e: SealedEnvelope): string {
  return JSON.stringify({
    v: e.v,
    alg: e.alg,
    contactId: e.contactId,
    epoch: e.epoch,
    senderId: e.senderId,
    msgId: e.msgId,
    sentAt: e.sentAt,
    ctr: e.ctr,
    prev: e.prev,
    seenSeq: e.seenSeq,
    seenHash: e.seenHash,
    nonce: e.nonce,
    ciphertext: e.ciphertext,
    sig: e.sig,
    cert: { body: e.cert.body, sig: e.cert.sig },
  });
}

/** The stored JSON text back as an envelope with its seq. */
export function toStored(json: string, seq: number): StoredEnvelope {
  return { ...(JSON.parse(json) as SealedEnvelope), seq };
}
