/**
 * Judging one file: its plaintext, decrypted in memory by the client (`openFile`), streamed to
 * clamd, and what clamd says turned into a verdict (`clean`, `infected` with the signature, or
 * `error`). A file over the size limit is `error` without being read. clamd unreachable, or the
 * download failing, is tried again with a growing delay, then `error`. A file whose bytes fail
 * their check (DECRYPT_FAILED: a bad chunk, truncation, another SHA-256) is `error`: what was
 * read of it is not judged. Each outcome has a code for the logs; nothing of the file is logged.
 */
import { LatchkeyError, type ScanVerdict } from '@latchkey/protocol';
import { ClamdUnreachableError, type ClamdClient } from './clamd.ts';

/** Why a verdict is what it is (logged with the ids). */
export type JudgementCode =
  | 'CLEAN'
  | 'INFECTED'
  | 'TOO_LARGE'
  | 'CLAMD_ERROR'
  | 'CLAMD_UNREACHABLE'
  | 'DOWNLOAD_FAILED'
  | 'DECRYPT_FAILED'
  | 'OPEN_FAILED';

export interface Judgement {
  verdict: ScanVerdict;
  code: JudgementCode;
  /** With `infected`: the signature clamd named. */
  signature?: string;
  /** A detail for the logs (a code or clamd's error text; never file content or names). */
  detail?: string;
}

export interface JudgeDeps {
  clamd: ClamdClient;
  /** Largest plaintext judged (bytes); a larger file is `error` (TOO_LARGE) unread. */
  maxFileBytes: number;
  /** Further tries after a first attempt that could not reach clamd or download the file. */
  retries: number;
  /** First delay between tries (ms); doubles each time up to `retryMaxMs`. */
  retryBaseMs: number;
  retryMaxMs: number;
  /** Called before each further try, for the logs. */
  onRetry?: (attempt: number, code: string) => void;
}

/** Waits `ms`, or less when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const done = (): void => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done);
  });
}

/**
 * Judges the file of `size` plaintext bytes whose verified plaintext `open()` streams.
 * Resolves null when `signal` aborted it (the scanner is closing this contact): no verdict.
 */
export async function judgeFile(
  open: () => ReadableStream<Uint8Array>,
  size: number,
  deps: JudgeDeps,
  signal: AbortSignal,
): Promise<Judgement | null> {
  if (size > deps.maxFileBytes)
    return { verdict: 'error', code: 'TOO_LARGE', detail: `over ${deps.maxFileBytes} bytes` };
  let delay = deps.retryBaseMs;
  let last: JudgementCode = 'CLAMD_UNREACHABLE';
  let lastDetail = '';
  for (let attempt = 0; attempt <= deps.retries; attempt++) {
    if (signal.aborted) return null;
    if (attempt > 0) {
      deps.onRetry?.(attempt, lastDetail);
      await pause(delay, signal);
      if (signal.aborted) return null;
      delay = Math.min(delay * 2, deps.retryMaxMs);
    }
    let stream: ReadableStream<Uint8Array>;
    try {
      stream = open();
    } catch (err) {
      const code = LatchkeyError.is(err) ? err.code : 'INTERNAL';
      return { verdict: 'error', code: 'OPEN_FAILED', detail: code };
    }
    try {
      const r = await deps.clamd.scan(stream);
      if (r.status === 'clean') return { verdict: 'clean', code: 'CLEAN' };
      if (r.status === 'infected')
        return { verdict: 'infected', code: 'INFECTED', signature: r.signature };
      return {
        verdict: 'error',
        code: r.code === 'TOO_LARGE' ? 'TOO_LARGE' : 'CLAMD_ERROR',
        detail: r.detail,
      };
    } catch (err) {
      if (err instanceof ClamdUnreachableError) {
        last = 'CLAMD_UNREACHABLE';
        lastDetail = err.code;
        continue;
      }
      if (LatchkeyError.is(err, 'DECRYPT_FAILED'))
        return { verdict: 'error', code: 'DECRYPT_FAILED', detail: err.code };
      if (LatchkeyError.is(err, 'UNAVAILABLE') || LatchkeyError.is(err, 'TIMEOUT')) {
        last = 'DOWNLOAD_FAILED';
        lastDetail = err.code;
        continue;
      }
      const code = LatchkeyError.is(err) ? err.code : 'INTERNAL';
      return { verdict: 'error', code: 'OPEN_FAILED', detail: code };
    }
  }
  return { verdict: 'error', code: last, detail: `${lastDetail} after ${deps.retries + 1} tries` };
}
