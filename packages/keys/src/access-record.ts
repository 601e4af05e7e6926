/**
 * One record of the key access log (access-log.ts): its fields, their check, and the canonical
 * bytes and chain hash that make the log tamper-evident (docs/siem.md "Verifying the chain").
 */
import { concatBytes, utf8Encode } from '@latchkey/crypto/codec';
import { hmacSha256, sha256 } from '@latchkey/crypto/mac';
import { Epoch, Id, LatchkeyError } from '@latchkey/protocol';

/**
 * `granted`, `denied`, `unavailable` (the key manager failed) for a key request; `destroyed` when
 * a contact's keys were shredded (then `participantId` names who: `admin` or `retention`).
 */
export type AccessOutcome = 'granted' | 'denied' | 'unavailable' | 'destroyed';
export const ACCESS_OUTCOMES = ['granted', 'denied', 'unavailable', 'destroyed'] as const;
const OUTCOMES: ReadonlySet<string> = new Set<string>(ACCESS_OUTCOMES);

export interface AccessRecord {
  contactId: string;
  epoch: number;
  participantId: string;
  /** Unix milliseconds. */
  time: number;
  outcome: AccessOutcome;
}

export interface StoredAccessRecord extends AccessRecord {
  /** 1, 2, 3, ... without gaps. */
  seq: number;
  /** Hex of this record's chain hash. */
  hash: string;
}

/** A stored record with the hash it chains from (the previous record's, zeros for seq 1). */
export interface ChainedAccessRecord extends StoredAccessRecord {
  prevHash: string;
}

/** How the chain is hashed: HMAC-SHA256 under the log key, or plain SHA-256 without one. */
export type AccessChainAlgorithm = 'hmac-sha256' | 'sha256';

/** The newest record's position and hash, to note outside the database. */
export const GENESIS: Uint8Array = new Uint8Array(32);
/** Hex of the hash the first record chains from: 32 zero bytes. */
export const ACCESS_LOG_GENESIS = '0'.repeat(64);

export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/**
 * Canonical bytes of a record: `latchkey.v1.access-log\n` and the JSON array
 * `[seq,contactId,epoch,participantId,time,outcome]` (no spaces; ids are [A-Za-z0-9_-], numbers
 * integers), so no two records encode alike.
 */
export function encodeAccessRecord(seq: number, r: AccessRecord): Uint8Array {
  const json = JSON.stringify([seq, r.contactId, r.epoch, r.participantId, r.time, r.outcome]);
  return utf8Encode(`latchkey.v1.access-log\n${json}`);
}

/**
 * A record's chain hash: `H(prevHash || encodeAccessRecord(seq, record))`, H = HMAC-SHA256 under
 * `key` when given, else SHA-256 (docs/siem.md "Verifying the chain").
 */
export function accessRecordHash(
  prevHash: Uint8Array,
  seq: number,
  r: AccessRecord,
  key?: Uint8Array,
): Uint8Array {
  const data = concatBytes(prevHash, encodeAccessRecord(seq, r));
  return key === undefined ? sha256(data) : hmacSha256(key, data);
}

/**
 * A copy of `r` with only the record's fields.
 * @throws LatchkeyError BAD_REQUEST for a malformed record.
 */
export function checkedRecord(r: AccessRecord): AccessRecord {
  if (
    !Id.safeParse(r.contactId).success ||
    !Id.safeParse(r.participantId).success ||
    !Epoch.safeParse(r.epoch).success ||
    !Number.isSafeInteger(r.time) ||
    r.time < 0 ||
    !OUTCOMES.has(r.outcome)
  ) {
    throw new LatchkeyError('BAD_REQUEST', 'malformed access record');
  }
  return {
    contactId: r.contactId,
    epoch: r.epoch,
    participantId: r.participantId,
    time: r.time,
    outcome: r.outcome,
  };
}
