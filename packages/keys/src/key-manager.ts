/**
 * The KeyManager contract: the one interface the key service talks to, whatever holds the keys
 * (internal SQLite adapter, an enterprise key service, an HSM). DESIGN.md "Key hierarchy":
 * every contact has one AES-256 content key per epoch; rotation adds an epoch, old epochs stay
 * readable until the contact is destroyed (crypto-shredding), after which nothing is readable
 * and the contact is never silently re-created.
 */

/** A content key of one contact and epoch, as handed to an authorised participant. */
export interface ContentKey {
  contactId: string;
  /** The epoch of `key`. */
  epoch: number;
  /** The newest epoch of the contact at the time of the call. */
  currentEpoch: number;
  /** The raw 32-byte AES-256 content key. Callers should zero it once encoded. */
  key: Uint8Array;
}

/** Liveness of the backend, for `/healthz`. `detail` is for local logs only. */
export interface KeyManagerHealth {
  status: 'ok' | 'degraded';
  backend: string;
  detail?: string;
  /**
   * The backend's most recent failure (an external key manager's: when, HTTP status, error
   * code, reason), shown by `/healthz`; never a secret, key or contact id.
   */
  lastError?: { at: number; status?: number; code?: string; reason: string };
}

export interface KeyManager {
  /**
   * The content key of `contactId` at `epoch` (default: the current epoch). The first call for
   * a contact creates epoch 0; concurrent first calls get the same key.
   * @throws LatchkeyError NOT_FOUND for an epoch that does not exist or a destroyed contact,
   *   BAD_REQUEST for a malformed contact id or epoch, KEY_UNAVAILABLE when the backend fails.
   */
  getContentKey(contactId: string, epoch?: number): Promise<ContentKey>;

  /**
   * The newest epoch of an existing contact. Does not create the contact.
   * @throws LatchkeyError NOT_FOUND for an unknown or destroyed contact, KEY_UNAVAILABLE when
   *   the backend fails.
   */
  currentEpoch(contactId: string): Promise<number>;

  /**
   * Adds a new epoch with a fresh content key and returns it. Old epochs stay readable.
   * @throws LatchkeyError NOT_FOUND for an unknown or destroyed contact, KEY_UNAVAILABLE when
   *   the backend fails.
   */
  rotate(contactId: string): Promise<number>;

  /**
   * Crypto-shredding: deletes every key of the contact and remembers that it was destroyed, so
   * later calls for it throw NOT_FOUND instead of creating a new key. Idempotent; destroying an
   * unknown contact records the tombstone too.
   * @throws LatchkeyError BAD_REQUEST for a malformed contact id, KEY_UNAVAILABLE when the
   *   backend fails.
   */
  destroy(contactId: string): Promise<void>;

  /** Never throws: a failing backend reports `degraded`. */
  health(): Promise<KeyManagerHealth>;

  /** Releases the backend. Later calls throw KEY_UNAVAILABLE. Idempotent. */
  close(): Promise<void>;
}
