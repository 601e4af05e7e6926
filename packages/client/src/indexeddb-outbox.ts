/**
 * An OutboxStore in the browser's IndexedDB (docs/guarantees.md "Client outbox"): pending
 * sealed envelopes survive a page reload. Records are the sealed envelopes only (ciphertext,
 * never plaintext), in one object store with an auto-increment key that keeps send order.
 */
import { LatchkeyError, type SealedEnvelope } from '@latchkey/protocol';
import type { OutboxStore } from './outbox.ts';

const STORE = 'outbox';

interface Row {
  n?: number;
  key: string;
  contactId: string;
  senderId: string;
  envelope: SealedEnvelope;
}

function done<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () =>
      reject(new LatchkeyError('UNAVAILABLE', 'outbox storage failed', { cause: req.error }));
  });
}

function committed(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = tx.onabort = () =>
      reject(new LatchkeyError('UNAVAILABLE', 'outbox storage failed', { cause: tx.error }));
  });
}

export class IndexedDbOutbox implements OutboxStore {
  readonly #db: Promise<IDBDatabase>;

  /**
   * @param name database name (one per site is enough: records carry contact and participant)
   * @throws LatchkeyError UNAVAILABLE (on use) where IndexedDB is missing or refused
   */
  constructor(
    name = 'latchkey-outbox',
    idb: IDBFactory | undefined = (globalThis as { indexedDB?: IDBFactory }).indexedDB,
  ) {
    this.#db = new Promise<IDBDatabase>((resolve, reject) => {
      if (!idb) return reject(new LatchkeyError('UNAVAILABLE', 'IndexedDB is not available'));
      const req = idb.open(name, 1);
      req.onupgradeneeded = () => {
        const store = req.result.createObjectStore(STORE, { keyPath: 'n', autoIncrement: true });
        store.createIndex('key', 'key', { unique: true });
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () =>
        reject(new LatchkeyError('UNAVAILABLE', 'IndexedDB open failed', { cause: req.error }));
    });
    this.#db.catch(() => undefined);
  }

  async load(contactId: string, participantId: string): Promise<SealedEnvelope[]> {
    const db = await this.#db;
    const rows = await done(
      db.transaction(STORE, 'readonly').objectStore(STORE).getAll() as IDBRequest<Row[]>,
    );
    return rows
      .sort((a, b) => (a.n ?? 0) - (b.n ?? 0))
      .filter((r) => r.contactId === contactId && r.senderId === participantId)
      .map((r) => r.envelope);
  }

  async put(envelope: SealedEnvelope): Promise<void> {
    const db = await this.#db;
    const tx = db.transaction(STORE, 'readwrite');
    const row: Row = {
      key: `${envelope.contactId}\u0000${envelope.msgId}`,
      contactId: envelope.contactId,
      senderId: envelope.senderId,
      envelope,
    };
    tx.objectStore(STORE).put(row);
    await committed(tx);
  }

  async delete(contactId: string, msgId: string): Promise<void> {
    const db = await this.#db;
    const tx = db.transaction(STORE, 'readwrite');
    const store = tx.objectStore(STORE);
    const req = store.index('key').getKey(`${contactId}\u0000${msgId}`);
    req.onsuccess = () => {
      if (req.result !== undefined) store.delete(req.result);
    };
    await committed(tx);
  }
}
