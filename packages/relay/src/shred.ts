/**
 * Deleting a contact's ciphertext on the relay (issue 6: crypto-shredding and retention;
 * DESIGN.md "Key hierarchy"). The keys are what make the contact unreadable (the key service
 * destroys them first); this removes the stored envelopes too, so the relay's database stops
 * carrying them. With `secure_delete` the freed pages are zeroed and a WAL checkpoint moves the
 * change into the main file, so the bytes are gone from this file (not from older backups,
 * which stay unreadable because the keys are gone).
 *
 * Its own short-lived SQLite connection on the store's file, so the store needs no new method;
 * the contact row and its membership stay (an expired contact stays refused).
 */
import { LatchkeyError } from '@latchkey/protocol';
import { openSqlite, type SqliteDatabase } from '@latchkey/storage/sqlite';
import type { RetentionHook } from './contacts.ts';

export interface CiphertextShredder {
  /**
   * Deletes every stored envelope of the contact; returns how many. Idempotent.
   * @throws LatchkeyError UNAVAILABLE when the store cannot be written.
   */
  deleteContact(contactId: string): Promise<number>;
}

/** A shredder over the SQLite message store file at `path`. */
export function sqliteShredder(path: string): CiphertextShredder {
  return {
    deleteContact(contactId) {
      let db: SqliteDatabase | undefined;
      try {
        db = openSqlite(path, { fileMustExist: true, synchronous: 'FULL', secureDelete: true });
        const conn = db;
        const n = conn
          .transaction(
            () => conn.prepare('DELETE FROM messages WHERE contact_id = ?').run(contactId).changes,
          )
          .immediate();
        // Move the zeroed pages into the main file and empty the WAL (best effort while others read).
        conn.pragma('wal_checkpoint(TRUNCATE)');
        return Promise.resolve(n);
      } catch (err) {
        return Promise.reject(
          new LatchkeyError('UNAVAILABLE', 'message store unavailable', {
            cause: err,
            detail: `shred: ${err instanceof Error ? err.message : String(err)}`,
          }),
        );
      } finally {
        db?.close();
      }
    },
  };
}

/** Retention that deletes an expired contact's ciphertext (the relay's default). */
export function deleteCiphertext(shredder: CiphertextShredder): RetentionHook {
  return { contactExpired: async (contactId) => void (await shredder.deleteContact(contactId)) };
}
