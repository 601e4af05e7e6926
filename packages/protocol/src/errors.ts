/**
 * The one error type of Latchkey. `code` is stable and safe to show to a peer; `message` is
 * a short human text without secrets; `detail` stays local (logs) and never crosses the wire.
 */
import { ERROR_CODES, type ErrorCode } from './codes.ts';

export class LatchkeyError extends Error {
  override readonly name = 'LatchkeyError';
  readonly code: ErrorCode;
  readonly detail: string | undefined;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown; detail?: string }) {
    super(message ?? code, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.detail = options?.detail;
  }

  /** Narrows `err` to a LatchkeyError, optionally of one code. */
  static is<C extends ErrorCode>(err: unknown, code?: C): err is LatchkeyError & { code: C } {
    return err instanceof LatchkeyError && (code === undefined || err.code === code);
  }

  get httpStatus(): number {
    return ERROR_CODES[this.code].http;
  }

  get wsCloseCode(): number {
    return ERROR_CODES[this.code].ws;
  }
}

/** Wraps anything thrown into a LatchkeyError; unknown errors become INTERNAL. */
export function toLatchkeyError(err: unknown): LatchkeyError {
  if (err instanceof LatchkeyError) return err;
  return new LatchkeyError('INTERNAL', 'internal error', {
    cause: err,
    detail: err instanceof Error ? err.message : String(err),
  });
}
