/**
 * Storage failures with the reason an operator needs. The code stays the service's own
 * (`UNAVAILABLE` for the relay and the webhook outbox, `KEY_UNAVAILABLE` for the key service), so
 * a peer sees only the fixed message of that code; `reason` and `detail` are for logs and tests.
 */
import { LatchkeyError } from '@latchkey/protocol';

/** Why a store refused to open, or why a write failed. */
export type StoreFailure = 'NEWER_SCHEMA' | 'NOT_ACCESSIBLE' | 'CORRUPT' | 'FULL' | 'READ_ONLY';

/** The wire code a store reports its failures under. */
export type StoreErrorCode = 'UNAVAILABLE' | 'KEY_UNAVAILABLE';

export interface StoreErrorOptions {
  cause?: unknown;
  detail?: string;
  /** Default `UNAVAILABLE`. */
  code?: StoreErrorCode;
}

/** A storage failure that carries its reason. */
export class StoreError extends LatchkeyError {
  readonly reason: StoreFailure;
  constructor(reason: StoreFailure, message: string, options?: StoreErrorOptions) {
    const { code = 'UNAVAILABLE', ...rest } = options ?? {};
    super(code, message, rest);
    this.reason = reason;
  }
}

/**
 * The one error for "this database was written by a newer version of Latchkey": the file or
 * database is left as it was found.
 */
export class SchemaTooNewError extends StoreError {
  declare readonly reason: 'NEWER_SCHEMA';
  /** Schema version found in the database. */
  readonly found: number;
  /** Highest schema version this code knows. */
  readonly known: number;

  /**
   * @param what names the database for the operator, e.g. `message store /var/lib/x.db`.
   */
  constructor(what: string, found: number, known: number, options?: StoreErrorOptions) {
    super(
      'NEWER_SCHEMA',
      `${what} has schema version ${found}, newer than this version of Latchkey knows (${known}); ` +
        'run a newer version or restore a backup; nothing was changed',
      { detail: `schema version ${found}, this build knows ${known}`, ...options },
    );
    this.found = found;
    this.known = known;
  }

  /**
   * Throws when `found` is newer than `known` (or not a version at all).
   * @throws SchemaTooNewError
   */
  static check(what: string, found: unknown, known: number, options?: StoreErrorOptions): number {
    if (typeof found === 'number' && Number.isSafeInteger(found) && found >= 0 && found <= known)
      return found;
    throw new SchemaTooNewError(what, typeof found === 'number' ? found : NaN, known, options);
  }
}
