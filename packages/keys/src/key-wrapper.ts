/**
 * The KeyWrapper contract: what wraps and unwraps content keys under a key-encryption key for
 * the wrapped key store (stores/key-store.ts). The store keeps contacts, epochs, tombstones and
 * the wrapped bytes; the wrapper holds the KEK: derived from the master key (internal), in the
 * enterprise's key manager (http), or in an HSM (pkcs11). DESIGN.md "Key hierarchy".
 */
import type { KeyManagerHealth } from './key-manager.ts';

/** Why a key is wrapped or unwrapped; passed on to external key managers for their audit. */
export type WrapReason = 'create' | 'rotate' | 'fetch' | 'rewrap' | 'destroy';

/** What a wrapped key is bound to (additional authenticated data), and why it is asked for. */
export interface WrapRequest {
  contactId: string;
  epoch: number;
  reason: WrapReason;
}

export interface KeyWrapper {
  /** `internal`, `http`, `pkcs11`: reported by health(). */
  readonly backend: string;
  /**
   * Whether the store should keep a key-check value and verify it at open, so that a wrong KEK
   * fails early (true for local KEKs; false for a remote service whose key versions change).
   */
  readonly checkAtOpen: boolean;

  /**
   * Wraps a 32-byte content key, bound to `req.contactId` and `req.epoch`.
   * @throws LatchkeyError KEY_UNAVAILABLE when the backend fails or refuses.
   */
  wrap(key: Uint8Array, req: WrapRequest): Promise<Uint8Array>;

  /**
   * Unwraps what wrap returned for the same contact and epoch.
   * @throws AuthenticationError (from @latchkey/crypto/aead) when `wrapped` does not
   *   authenticate under this KEK and context; LatchkeyError KEY_UNAVAILABLE when the backend
   *   fails or refuses.
   */
  unwrap(wrapped: Uint8Array, req: WrapRequest): Promise<Uint8Array>;

  /**
   * Optional data-key style creation: a fresh content key and its wrapped form in one call.
   * @throws LatchkeyError KEY_UNAVAILABLE when the backend fails or refuses.
   */
  generate?(req: WrapRequest): Promise<{ key: Uint8Array; wrapped: Uint8Array }>;

  /**
   * Optional: re-wraps `wrapped` under the KEK's newest version inside the backend, the content
   * key never leaving it (an external key manager's `rewrap`). Used by `keys rewrap` when the
   * KEK is the enterprise's and it has rotated it.
   * @throws LatchkeyError KEY_UNAVAILABLE when the backend fails or refuses; AuthenticationError
   *   as unwrap.
   */
  rewrap?(wrapped: Uint8Array, req: WrapRequest): Promise<Uint8Array>;

  /**
   * Optional: tells the backend that the contact was crypto-shredded, so that it refuses every
   * later request for it (an external key manager's `destroy`, reason `destroy`). The wrapped
   * key store calls it after its tombstone is committed and retries it until it succeeds.
   * @throws LatchkeyError KEY_UNAVAILABLE when the backend fails.
   */
  destroyContact?(contactId: string): Promise<void>;

  /** Never throws. */
  health(): Promise<KeyManagerHealth>;

  /** Releases the backend and forgets key material. Idempotent. */
  close(): Promise<void>;
}

/**
 * The generations of a KEK (docs/key-management.md "Completing a shred"). Completing a shred
 * re-wraps every live key under generation G+1 and then destroys generation G, so that a backup
 * of the wrapped keys taken before the shred opens with nothing that still exists. Generation 1
 * is the KEK as configured; each backend names later ones its own way (a new master key, a new
 * HSM key object, a new KMIP key).
 */
export interface KekGenerations {
  /**
   * The wrapper of generation `generation`. With `create`, makes that generation's KEK when it
   * does not exist yet, and reuses it when an earlier, interrupted run made it.
   * @throws LatchkeyError KEY_UNAVAILABLE when the KEK is missing (without `create`) or the
   *   backend fails; CONFLICT when this backend cannot make a new generation by itself.
   */
  wrapper(generation: number, opts: { create: boolean }): Promise<KeyWrapper>;
  /**
   * Destroys the KEK of a retired generation. Idempotent: a KEK already gone is fine.
   * @throws LatchkeyError KEY_UNAVAILABLE when the backend fails.
   */
  destroy(generation: number): Promise<void>;
}
