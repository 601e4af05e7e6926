/**
 * The reference key manager's keys, over its SQLite file (db.ts): versions of its
 * key-encryption key, the content keys of the key-store model (wrapped under its KEK, never in
 * the clear), tombstones, revocations, the nonces of recent requests (replay refusal), and the
 * request audit (audit-log.ts).
 *
 * KEK versions are derived from one root secret: `HKDF(root, 'latchkey.v1.kek' 0 keyId/vN)`
 * (@latchkey/crypto/wrap deriveKek with a purpose). A wrapped key is
 * `0x01 || u32 version || AES-256-GCM wrap (60 bytes)` bound to contact id and epoch, so rewrap
 * knows which version made it. A real deployment keeps the root in its HSM or secret store.
 */
import type Database from 'better-sqlite3';
import { AuthenticationError } from '@latchkey/crypto/aead';
import { concatBytes } from '@latchkey/crypto/codec';
import {
  deriveKek,
  generateContentKey,
  unwrapContentKey,
  wrapContentKey,
} from '@latchkey/crypto/wrap';
import { LatchkeyError } from '@latchkey/protocol';
import { readAudit, recordAudit, type AuditEntry } from './audit-log.ts';
import { openKmsDb } from './db.ts';

export type { AuditEntry } from './audit-log.ts';

const FORMAT = 0x01;

const u32 = (n: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
};

export class KmsStore {
  readonly db: Database.Database;
  readonly #root: Uint8Array;
  readonly #keks = new Map<string, Uint8Array>();
  readonly #now: () => number;

  constructor(path: string, root: Uint8Array, now: () => number) {
    if (root.length !== 32) throw new RangeError('root key must be 32 bytes');
    this.db = openKmsDb(path);
    this.#root = Uint8Array.from(root);
    this.#now = now;
  }

  /** The newest version of `keyId`, creating version 1 on first use. */
  primaryVersion(keyId: string): number {
    const row = this.db
      .prepare<[string], { v: number | null }>(
        'SELECT max(version) AS v FROM key_versions WHERE key_id = ?',
      )
      .get(keyId);
    if (row?.v != null) return row.v;
    this.db
      .prepare('INSERT OR IGNORE INTO key_versions (key_id, version, created_at) VALUES (?, 1, ?)')
      .run(keyId, this.#now());
    return 1;
  }

  createdAt(keyId: string): number {
    this.primaryVersion(keyId);
    return (
      this.db
        .prepare<[string], { t: number }>(
          'SELECT min(created_at) AS t FROM key_versions WHERE key_id = ?',
        )
        .get(keyId)?.t ?? 0
    );
  }

  /** Adds a new version of `keyId`; new wraps use it, old ones stay unwrappable. */
  rotateKey(keyId: string): number {
    return this.db
      .transaction(() => {
        const next = this.primaryVersion(keyId) + 1;
        this.db
          .prepare('INSERT INTO key_versions (key_id, version, created_at) VALUES (?, ?, ?)')
          .run(keyId, next, this.#now());
        return next;
      })
      .immediate();
  }

  #kek(keyId: string, version: number): Uint8Array {
    const id = `${keyId}/v${version}`;
    let kek = this.#keks.get(id);
    if (kek === undefined) {
      kek = deriveKek(this.#root, id);
      this.#keks.set(id, kek);
    }
    return kek;
  }

  async wrap(
    keyId: string,
    key: Uint8Array,
    ctx: { contactId: string; epoch: number },
  ): Promise<{ wrapped: Uint8Array; keyVersion: number }> {
    const version = this.primaryVersion(keyId);
    const inner = await wrapContentKey(this.#kek(keyId, version), key, ctx);
    return {
      wrapped: concatBytes(new Uint8Array([FORMAT]), u32(version), inner),
      keyVersion: version,
    };
  }

  /** @throws AuthenticationError when `wrapped` is not ours for this key and context. */
  async unwrap(
    keyId: string,
    wrapped: Uint8Array,
    ctx: { contactId: string; epoch: number },
  ): Promise<{ key: Uint8Array; keyVersion: number }> {
    if (wrapped.length !== 65 || wrapped[0] !== FORMAT) throw new AuthenticationError();
    const version = new DataView(wrapped.buffer, wrapped.byteOffset + 1, 4).getUint32(0);
    const known = this.db
      .prepare<[string, number], { n: number }>(
        'SELECT 1 AS n FROM key_versions WHERE key_id = ? AND version = ?',
      )
      .get(keyId, version);
    if (known === undefined) throw new AuthenticationError();
    return {
      key: await unwrapContentKey(this.#kek(keyId, version), wrapped.subarray(5), ctx),
      keyVersion: version,
    };
  }

  isRevoked(contactId: string): boolean {
    return (
      this.db
        .prepare<[string], { n: number }>('SELECT 1 AS n FROM revoked WHERE contact_id = ?')
        .get(contactId) !== undefined
    );
  }

  /** Was the contact shredded under this key (a destroy notice)? Refused for ever then. */
  isDestroyed(keyId: string, contactId: string): boolean {
    return (
      this.db
        .prepare<[string, string], { n: number }>(
          'SELECT 1 AS n FROM destroyed WHERE key_id = ? AND contact_id = ?',
        )
        .get(keyId, contactId) !== undefined
    );
  }

  destroy(keyId: string, contactId: string): void {
    this.db
      .prepare(
        'INSERT OR IGNORE INTO destroyed (key_id, contact_id, destroyed_at) VALUES (?, ?, ?)',
      )
      .run(keyId, contactId, this.#now());
  }

  revoke(contactId: string): void {
    this.db
      .prepare('INSERT OR IGNORE INTO revoked (contact_id, revoked_at) VALUES (?, ?)')
      .run(contactId, this.#now());
  }

  /** Records a request nonce until `expiresAt`; false when it was already there (a replay). */
  rememberNonce(nonce: string, expiresAt: number): boolean {
    const now = this.#now();
    return this.db
      .transaction(() => {
        this.db.prepare('DELETE FROM nonces WHERE expires_at <= ?').run(now);
        return (
          this.db
            .prepare('INSERT OR IGNORE INTO nonces (nonce, expires_at) VALUES (?, ?)')
            .run(nonce, expiresAt).changes === 1
        );
      })
      .immediate();
  }

  // ---- key-store model ------------------------------------------------------------------

  #storeContact(
    contactId: string,
  ): { current_epoch: number; destroyed_at: number | null } | undefined {
    return this.db
      .prepare<[string], { current_epoch: number; destroyed_at: number | null }>(
        'SELECT current_epoch, destroyed_at FROM store_contacts WHERE contact_id = ?',
      )
      .get(contactId);
  }

  #live(contactId: string): number {
    const c = this.#storeContact(contactId);
    if (c === undefined) throw new LatchkeyError('NOT_FOUND', 'unknown contact');
    if (c.destroyed_at !== null)
      throw new LatchkeyError('NOT_FOUND', 'contact keys were destroyed');
    return c.current_epoch;
  }

  /** Creates epoch 0 when the contact is new (idempotent). */
  async storeCreate(keyId: string, contactId: string): Promise<number> {
    const existing = this.#storeContact(contactId);
    if (existing !== undefined) return this.#live(contactId);
    const key = generateContentKey();
    const { wrapped } = await this.wrap(keyId, key, { contactId, epoch: 0 });
    key.fill(0);
    return this.db
      .transaction(() => {
        const now = this.#now();
        const ins = this.db
          .prepare(
            'INSERT OR IGNORE INTO store_contacts (contact_id, current_epoch, created_at) VALUES (?, 0, ?)',
          )
          .run(contactId, now);
        if (ins.changes === 1)
          this.db
            .prepare('INSERT INTO store_keys (contact_id, epoch, wrapped) VALUES (?, 0, ?)')
            .run(contactId, wrapped);
        return this.#live(contactId);
      })
      .immediate();
  }

  storeCurrent(contactId: string): number {
    return this.#live(contactId);
  }

  async storeRotate(keyId: string, contactId: string): Promise<number> {
    for (let attempt = 0; attempt < 8; attempt++) {
      const current = this.#live(contactId);
      const key = generateContentKey();
      const { wrapped } = await this.wrap(keyId, key, { contactId, epoch: current + 1 });
      key.fill(0);
      const done = this.db
        .transaction(() => {
          if (this.#live(contactId) !== current) return false;
          this.db
            .prepare('INSERT INTO store_keys (contact_id, epoch, wrapped) VALUES (?, ?, ?)')
            .run(contactId, current + 1, wrapped);
          this.db
            .prepare('UPDATE store_contacts SET current_epoch = ? WHERE contact_id = ?')
            .run(current + 1, contactId);
          return true;
        })
        .immediate();
      if (done) return current + 1;
    }
    throw new LatchkeyError('CONFLICT', 'too many concurrent rotations');
  }

  async storeGet(
    keyId: string,
    contactId: string,
    epoch: number | 'current',
  ): Promise<{ epoch: number; currentEpoch: number; key: Uint8Array }> {
    const { current, wrapped, e } = this.db.transaction(() => {
      const cur = this.#live(contactId);
      const want = epoch === 'current' ? cur : epoch;
      const row = this.db
        .prepare<[string, number], { wrapped: Uint8Array }>(
          'SELECT wrapped FROM store_keys WHERE contact_id = ? AND epoch = ?',
        )
        .get(contactId, want);
      if (row === undefined) throw new LatchkeyError('NOT_FOUND', 'unknown epoch');
      return { current: cur, wrapped: row.wrapped, e: want };
    })();
    const { key } = await this.unwrap(keyId, wrapped, { contactId, epoch: e });
    return { epoch: e, currentEpoch: current, key };
  }

  /** Crypto-shredding: deletes every key of the contact and leaves a tombstone. Idempotent. */
  storeDestroy(contactId: string): void {
    this.db
      .transaction(() => {
        const now = this.#now();
        this.db.prepare('DELETE FROM store_keys WHERE contact_id = ?').run(contactId);
        this.db
          .prepare(
            `INSERT INTO store_contacts (contact_id, current_epoch, created_at, destroyed_at) VALUES (?, 0, ?, ?)
             ON CONFLICT (contact_id) DO UPDATE SET destroyed_at = coalesce(destroyed_at, excluded.destroyed_at)`,
          )
          .run(contactId, now, now);
      })
      .immediate();
    this.db.pragma('wal_checkpoint(TRUNCATE)');
  }

  // ---- audit ----------------------------------------------------------------------------

  audit(e: Omit<AuditEntry, 'id'>): void {
    recordAudit(this.db, e);
  }

  auditLog(): AuditEntry[] {
    return readAudit(this.db);
  }

  close(): void {
    this.db.close();
    this.#root.fill(0);
    for (const k of this.#keks.values()) k.fill(0);
  }
}
