/**
 * The wrapped key store's public contract (key-store.ts): the KeyManager with online KEK
 * replacement, key generations and destroy notices, and the options every store takes.
 */
import type { KeyManager } from '../key-manager.ts';
import type { KekGenerations, KeyWrapper } from '../key-wrapper.ts';

/** A KeyManager over the wrapped key store, whose KEK can be replaced online. */
export interface WrappedKeyManager extends KeyManager {
  /**
   * Master-key rotation: re-wraps every stored content key (and the key-check value) under
   * `next` in one transaction, online: reads keep working throughout, creations and rotations
   * wait or retry, no message is touched. From then on the manager uses `next` (and owns it);
   * the previous wrapper is closed once the calls that began with it have finished. Other
   * processes using the same database must be restarted with the new KEK.
   * With `next` the manager's own wrapper (`currentWrapper`), every key is re-wrapped in place
   * by the backend under its KEK's newest version (`KeyWrapper.rewrap`: an external key
   * manager after the enterprise rotated its KEK); the key generation stays.
   * @returns how many content keys were re-wrapped.
   * @throws LatchkeyError KEY_UNAVAILABLE when a key cannot be unwrapped or wrapped (nothing
   *   is changed then), CONFLICT when other writers kept adding keys, BAD_REQUEST for an
   *   in-place rewrap the backend cannot do.
   */
  rewrap(next: KeyWrapper): Promise<{ rewrapped: number }>;

  /** The wrapper in use (for an in-place rewrap). */
  readonly currentWrapper: KeyWrapper;

  /** The store's KEK generation: current, tainted by a shred since when, retired but not yet destroyed. */
  keyGeneration(): Promise<KeyGenerationState>;

  /** Records that the KEK of a retired generation was destroyed. Idempotent. */
  markDestroyed(generation: number): Promise<void>;

  /**
   * Contacts whose destroy notice the external key manager has not yet taken (oldest first);
   * empty for wrappers that take none. Sent again in the background until it succeeds.
   */
  owedDestroyNotices(): Promise<string[]>;

  /** Sends owed destroy notices now and resolves when that round is over (tests, diagnostics). */
  flushDestroyNotices(): Promise<void>;
}

export interface KeyGenerationState {
  /** The generation every stored key is wrapped under (1 for a new store). */
  generation: number;
  /** When a destroy first removed keys wrapped under it (ms), or null. */
  taintedSince: number | null;
  /** Earlier generations re-wrapped away from whose KEK is not yet destroyed, oldest first. */
  retiring: number[];
}

/** Whether a `wrapper` option holds generations rather than one wrapper. */
export function isGenerations(w: KeyWrapper | KekGenerations): w is KekGenerations {
  return typeof (w as Partial<KekGenerations>).destroy === 'function';
}

export interface KeyStoreOptions {
  /**
   * Holds the KEK: a wrapper, or the KEK's generations, of which the store's current one is
   * opened. The key manager owns the wrapper from now on and closes it on close().
   */
  wrapper: KeyWrapper | KekGenerations;
  /** Clock in Unix milliseconds, for tests. */
  now?: () => number;
  /** Message of the KEY_UNAVAILABLE thrown when the KEK does not match the store. */
  mismatchMessage?: string;
}
