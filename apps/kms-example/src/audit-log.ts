/**
 * The request audit of the reference key manager (store.ts, kms.ts): one row per request, who,
 * what, which contact and epoch, why, and the outcome; never a key.
 */
import type Database from 'better-sqlite3';

/** One audited request, as `Kms.audit()` answers it. */
export interface AuditEntry {
  id: number;
  time: number;
  clientId: string | null;
  method: string;
  path: string;
  operation: string;
  contactId: string | null;
  epoch: number | null;
  reason: string | null;
  status: number;
  outcome: string;
}

interface AuditRow {
  id: number;
  time: number;
  client_id: string | null;
  method: string;
  path: string;
  operation: string;
  contact_id: string | null;
  epoch: number | null;
  reason: string | null;
  status: number;
  outcome: string;
}

/** Appends one request to the audit. */
export function recordAudit(db: Database.Database, e: Omit<AuditEntry, 'id'>): void {
  db.prepare(
    'INSERT INTO audit (time, client_id, method, path, operation, contact_id, epoch, reason, status, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
  ).run(
    e.time,
    e.clientId,
    e.method,
    e.path,
    e.operation,
    e.contactId,
    e.epoch,
    e.reason,
    e.status,
    e.outcome,
  );
}

/** The whole audit, oldest first. */
export function readAudit(db: Database.Database): AuditEntry[] {
  return db
    .prepare<[], AuditRow>('SELECT * FROM audit ORDER BY id')
    .all()
    .map((r) => ({
      id: r.id,
      time: r.time,
      clientId: r.client_id,
      method: r.method,
      path: r.path,
      operation: r.operation,
      contactId: r.contact_id,
      epoch: r.epoch,
      reason: r.reason,
      status: r.status,
      outcome: r.outcome,
    }));
}
