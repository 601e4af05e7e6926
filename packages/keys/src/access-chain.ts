/**
 * The key access log's chain walk, shared by its SQLite (access-log.ts) and PostgreSQL
 * (stores/pg-access-log.ts) tables: every record's hash is recomputed from the one before, in
 * seq order from 1 with no gap, and an earlier noted head must still be there unchanged.
 */
import { constantTimeEqual } from '@latchkey/crypto/compare';
import {
  GENESIS,
  hex,
  type AccessOutcome,
  type AccessRecord,
  type ChainedAccessRecord,
  type StoredAccessRecord,
} from './access-record.ts';
import type { AccessLogHead, AccessLogVerdict } from './service-state.ts';

/** A row of `key_access_log`, as either backend returns it. */
export interface AccessLogRow {
  seq: number;
  contact_id: string;
  epoch: number;
  participant_id: string;
  time: number;
  outcome: string;
  hash: Uint8Array;
}

/** A row as the log's readers see it. */
export function storedRecord(row: AccessLogRow): StoredAccessRecord {
  return {
    seq: row.seq,
    contactId: row.contact_id,
    epoch: row.epoch,
    participantId: row.participant_id,
    time: row.time,
    outcome: row.outcome as AccessOutcome,
    hash: hex(row.hash),
  };
}

/** A row as the chain walk reads it. */
export function chainRow(row: AccessLogRow): ChainRow {
  const { seq, hash: _hex, ...record } = storedRecord(row);
  return { seq, record, hash: row.hash };
}

/** `records` (consecutive, oldest first) each with the hash it chains from, the first from `prevHash`. */
export function chainedFrom(
  prevHash: string,
  records: readonly StoredAccessRecord[],
): ChainedAccessRecord[] {
  let prev = prevHash;
  return records.map((r) => {
    const out = { ...r, prevHash: prev };
    prev = r.hash;
    return out;
  });
}

/** One stored record as the walk reads it. */
export interface ChainRow {
  seq: number;
  record: AccessRecord;
  hash: unknown;
}

/**
 * Walks `rows` (in seq order). With `head` (noted earlier), also checks that that record is
 * still there unchanged, so cutting off the tail is caught.
 */
export function verifyChain(
  rows: Iterable<ChainRow>,
  hash: (prev: Uint8Array, seq: number, r: AccessRecord) => Uint8Array,
  head: AccessLogHead | undefined,
): AccessLogVerdict {
  let prev: Uint8Array = GENESIS;
  let expectSeq = 1;
  let sawHead = head === undefined || head.seq === 0;
  for (const row of rows) {
    if (row.seq !== expectSeq)
      return { ok: false, seq: expectSeq, reason: 'record missing or out of order' };
    const want = hash(prev, row.seq, row.record);
    if (!(row.hash instanceof Uint8Array) || !constantTimeEqual(want, row.hash)) {
      return { ok: false, seq: row.seq, reason: 'record altered or chain broken' };
    }
    if (head !== undefined && head.seq === row.seq) {
      if (head.hash !== hex(row.hash))
        return { ok: false, seq: row.seq, reason: 'head does not match' };
      sawHead = true;
    }
    prev = row.hash;
    expectSeq++;
  }
  if (!sawHead)
    return { ok: false, seq: head?.seq ?? 0, reason: 'records after the last one were removed' };
  return { ok: true, count: expectSeq - 1, head: { seq: expectSeq - 1, hash: hex(prev) } };
}
