/**
 * One way to open a wrapped key store: a database (stores/) and a KEK holder (wrappers/). The
 * SQLite file is the default; PostgreSQL is loaded only when a URL is given, so a SQLite user
 * never loads `pg`.
 */
import type { KekGenerations, KeyWrapper } from './key-wrapper.ts';
import type { WrappedKeyManager } from './stores/key-store.ts';
import { openWrappedKeyManager } from './stores/sqlite.ts';

/** Where the wrapped keys live: a SQLite file, or a PostgreSQL database of their own. */
export type KeyStoreLocation = { path: string } | { url: string; maxConnections?: number };

export interface OpenKeyManagerOptions {
  store: KeyStoreLocation;
  /**
   * Holds the KEK: a wrapper, or the KEK's generations (HSM, KMIP), of which the store's current
   * one is opened. The key manager owns it from now on and closes it on close().
   */
  wrapper: KeyWrapper | KekGenerations;
  /** Message of the KEY_UNAVAILABLE thrown when the KEK does not match the store. */
  mismatchMessage?: string;
  /** Clock in Unix milliseconds, for tests. */
  now?: () => number;
}

/**
 * Opens (creating when missing) the wrapped key store at `opts.store` with `opts.wrapper`.
 * @throws LatchkeyError KEY_UNAVAILABLE when the store cannot be opened, has a newer schema, or
 *   its KEK is not the wrapper's (the wrapper is closed then).
 */
export async function openKeyManager(opts: OpenKeyManagerOptions): Promise<WrappedKeyManager> {
  const { store, ...rest } = opts;
  if ('url' in store) {
    const { openPgWrappedKeyManager } = await import('./stores/postgres.ts');
    return openPgWrappedKeyManager({ ...rest, ...store });
  }
  return openWrappedKeyManager({ ...rest, path: store.path });
}
