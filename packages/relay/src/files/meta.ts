/**
 * Blob metadata in the message store's database (table `blobs`, sqlite-schema.ts v6 and
 * pg-schema.ts v4): who uploaded what into which contact, its declared size, the offset stored
 * so far and whether it is complete. Written once as flows (@latchkey/storage flow.ts) that run
 * in one transaction of either store (`runFileFlow`); on PostgreSQL the contact's row is locked
 * first, as every other write to a contact does, so relays sharing the database count one quota.
 *
 * Membership is decided here, in the same transaction as what it guards: the caller must be an
 * active participant of the contact, with the role its token says, and the contact not expired.
 */
import {
  LatchkeyError,
  effectiveState,
  type ContactState,
  type ParticipantState,
  type Role,
} from '@latchkey/protocol';
import { exec, forUpdate, row, rows, type Flow, type Sql } from '@latchkey/storage';

/** A store that runs file flows in its transactions (both message stores do). */
export interface FileMetaRunner {
  /**
   * Runs `flow` in one transaction (`write`: SQLite IMMEDIATE; PostgreSQL always one).
   * @throws LatchkeyError UNAVAILABLE for a storage failure; a flow's LatchkeyError as is.
   */
  runFileFlow<T>(what: string, flow: (sql: Sql) => Flow<T>, write: boolean): Promise<T>;
}

export function isFileMetaRunner(s: unknown): s is FileMetaRunner {
  return typeof (s as Partial<FileMetaRunner> | null)?.runFileFlow === 'function';
}

/** Who a request speaks for: a token's principal, or a capability's participant. */
export interface Member {
  contactId: string;
  participantId: string;
  /** The token's role (checked against the stored one); undefined for a capability. */
  role?: Role;
}

export interface BlobRow {
  blob: string;
  contactId: string;
  uploaderId: string;
  size: number;
  received: number;
  complete: boolean;
  createdAt: number;
}

interface RawBlob {
  blob_id: string;
  contact_id: string;
  uploader_id: string;
  size: number;
  received: number;
  complete: number;
  created_at: number;
}

const toRow = (r: RawBlob): BlobRow => ({
  blob: r.blob_id,
  contactId: r.contact_id,
  uploaderId: r.uploader_id,
  size: Number(r.size),
  received: Number(r.received),
  complete: Number(r.complete) === 1,
  createdAt: Number(r.created_at),
});

const BLOB =
  'SELECT blob_id, contact_id, uploader_id, size, received, complete, created_at FROM blobs';

/** Limits a new upload is checked against. */
export interface CreateLimits {
  maxFileBytes: number;
  contactQuotaBytes: number;
  maxIncompletePerParticipant: number;
}

/**
 * The contact's state at `now` once the member is checked.
 * @throws LatchkeyError NOT_FOUND (unknown contact), CONTACT_EXPIRED, FORBIDDEN (not an active
 *   participant, or another role than the token's).
 */
function* checkMember(sql: Sql, m: Member, now: number, lock: boolean): Flow<ContactState> {
  const c = yield* row<{ state: ContactState; expires_at: number }>(
    sql,
    `SELECT state, expires_at FROM contacts WHERE contact_id = ?${forUpdate(sql, lock)}`,
    [m.contactId],
  );
  if (!c) throw new LatchkeyError('NOT_FOUND', 'no such contact');
  const state = effectiveState({ state: c.state, expiresAt: Number(c.expires_at) }, now);
  if (state === 'expired') throw new LatchkeyError('CONTACT_EXPIRED');
  const p = yield* row<{ role: Role | null; state: ParticipantState }>(
    sql,
    'SELECT role, state FROM participants WHERE contact_id = ? AND participant_id = ?',
    [m.contactId, m.participantId],
  );
  if (!p || p.state !== 'active' || (m.role !== undefined && p.role !== m.role))
    throw new LatchkeyError('FORBIDDEN', 'not a member of this contact');
  return state;
}

/** Creates an upload, reserving its declared size against the contact's quota. */
export function* createBlob(
  sql: Sql,
  m: Member,
  blob: string,
  size: number,
  now: number,
  limits: CreateLimits,
): Flow<BlobRow> {
  if (size > limits.maxFileBytes) throw new LatchkeyError('TOO_LARGE', 'file too large');
  const state = yield* checkMember(sql, m, now, true);
  if (state === 'closed') throw new LatchkeyError('CONTACT_CLOSED');
  const open = yield* row<{ n: number }>(
    sql,
    'SELECT count(*) AS n FROM blobs WHERE contact_id = ? AND uploader_id = ? AND complete = 0',
    [m.contactId, m.participantId],
  );
  if (Number(open?.n ?? 0) >= limits.maxIncompletePerParticipant)
    throw new LatchkeyError('RATE_LIMITED', 'too many unfinished uploads');
  const used = yield* row<{ b: number }>(
    sql,
    'SELECT CAST(coalesce(sum(size), 0) AS BIGINT) AS b FROM blobs WHERE contact_id = ?',
    [m.contactId],
  );
  if (Number(used?.b ?? 0) + size > limits.contactQuotaBytes)
    throw new LatchkeyError('QUOTA_EXCEEDED', 'the contact has no room for this file');
  yield* exec(
    sql,
    'INSERT INTO blobs (blob_id, contact_id, uploader_id, size, received, complete, created_at) VALUES (?, ?, ?, ?, 0, 0, ?)',
    [blob, m.contactId, m.participantId, size, now],
  );
  return {
    blob,
    contactId: m.contactId,
    uploaderId: m.participantId,
    size,
    received: 0,
    complete: false,
    createdAt: now,
  };
}

/**
 * A blob of the member's contact, the member checked in the same transaction.
 * @returns the blob and the contact's state.
 * @throws LatchkeyError NOT_FOUND (no such blob in this contact), and checkMember's.
 */
export function* memberBlob(
  sql: Sql,
  m: Member,
  blob: string,
  now: number,
): Flow<{ blob: BlobRow; state: ContactState }> {
  const state = yield* checkMember(sql, m, now, false);
  const r = yield* row<RawBlob>(sql, `${BLOB} WHERE blob_id = ? AND contact_id = ?`, [
    blob,
    m.contactId,
  ]);
  if (!r) throw new LatchkeyError('NOT_FOUND', 'no such file');
  return { blob: toRow(r), state };
}

/**
 * Records a write: the offset moves from `from` to `to` (and the blob completes when `to` is
 * its size and `complete` is asked for). False when the offset was not `from` any more or the
 * blob is gone (a concurrent writer, a shred).
 */
export function* advance(
  sql: Sql,
  blob: string,
  from: number,
  to: number,
  complete: boolean,
  now: number,
): Flow<boolean> {
  const n = yield* exec(
    sql,
    `UPDATE blobs SET received = ?, complete = ?, completed_at = CAST(? AS BIGINT)
     WHERE blob_id = ? AND received = ? AND complete = 0 AND ? <= size AND (? = 0 OR ? = size)`,
    [to, complete ? 1 : 0, complete ? now : null, blob, from, to, complete ? 1 : 0, to],
  );
  return n === 1;
}

/** The blob's row, or undefined. */
export function* getBlob(sql: Sql, blob: string): Flow<BlobRow | undefined> {
  const r = yield* row<RawBlob>(sql, `${BLOB} WHERE blob_id = ?`, [blob]);
  return r && toRow(r);
}

/** Ids of a contact's blobs (to delete their bytes before their rows). */
export function* contactBlobs(sql: Sql, contactId: string): Flow<string[]> {
  return (yield* rows<{ blob_id: string }>(sql, 'SELECT blob_id FROM blobs WHERE contact_id = ?', [
    contactId,
  ])).map((r) => r.blob_id);
}

/** Ids of incomplete uploads created before `before` (at most `limit`). */
export function* staleUploads(sql: Sql, before: number, limit: number): Flow<string[]> {
  return (yield* rows<{ blob_id: string }>(
    sql,
    'SELECT blob_id FROM blobs WHERE complete = 0 AND created_at < ? ORDER BY created_at LIMIT ?',
    [before, limit],
  )).map((r) => r.blob_id);
}

/** Deletes rows; returns how many. */
export function* deleteRows(sql: Sql, blobs: readonly string[]): Flow<number> {
  let n = 0;
  for (const b of blobs) n += yield* exec(sql, 'DELETE FROM blobs WHERE blob_id = ?', [b]);
  return n;
}
