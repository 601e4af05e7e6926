/**
 * The stored form of a sealed envelope, shared by every message store: canonical JSON text in,
 * the envelope with its seq out. The store never interprets the ciphertext.
 */
import { PROTOCOL_VERSION, type SealedEnvelope, type StoredEnvelope } from '@latchkey/protocol';

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

/**
 * The `deliver` frame of a stored envelope, built from its canonical JSON without parsing or
 * serialising the envelope again: the same JSON value as `JSON.stringify({ v, type: 'deliver',
 * envelope: { ...envelope, seq } })`.
 */
export function deliverText(json: string, seq: number): string {
  return `{"v":${PROTOCOL_VERSION},"type":"deliver","envelope":${json.slice(0, -1)},"seq":${seq}}}`;
}

/** The stored JSON text back as an envelope with its seq. */
export function toStored(json: string, seq: number): StoredEnvelope {
  return { ...(JSON.parse(json) as SealedEnvelope), seq };
}
