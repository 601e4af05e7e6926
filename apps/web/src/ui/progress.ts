/**
 * A transfer's progress (an upload or a download of an attachment): a labelled
 * `role="progressbar"` with `aria-valuenow` (percent) and `aria-valuetext` (bytes so far in
 * words, also shown), `data-done`/`data-total` in bytes, and a Cancel button that aborts the transfer through an AbortController. The caller
 * names it with `data-testid` (`upload-progress`, `download-progress`) and removes it when done.
 * `transferErrorText` says plainly why a transfer failed.
 */
import { LatchkeyError, type ErrorCode } from '@latchkey/protocol';
import { bidiSafeText } from './bidi.ts';
import { h, setText } from './dom.ts';

/** A byte count for people: `999 B`, `12.3 KB`, `4.5 MB`, `1.2 GB` (powers of 1,024). */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) return '?';
  if (n < 1024) return `${Math.round(n)} B`;
  const units = ['KB', 'MB', 'GB', 'TB'] as const;
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

/** Whether `err` is the abort of a transfer that was cancelled through `signal`. */
export function isCancel(err: unknown, signal: AbortSignal): boolean {
  return signal.aborted || (err instanceof DOMException && err.name === 'AbortError');
}

/** What a transfer's error codes mean to the person waiting for it. */
const ERROR_WORDS: Partial<Record<ErrorCode, string>> = {
  TOO_LARGE: 'the file is larger than this chat allows.',
  QUOTA_EXCEEDED: 'this conversation has no room left for files.',
  RATE_LIMITED: 'too many transfers right now. Try again in a minute.',
  FORBIDDEN: 'not allowed.',
  NOT_FOUND: 'the file is no longer stored.',
  AUTH_EXPIRED: 'the session expired. Try again in a moment.',
  AUTH_INVALID: 'the session expired. Try again in a moment.',
  AUTH_REQUIRED: 'the session expired. Try again in a moment.',
  CONTACT_CLOSED: 'this conversation is closed.',
  CONTACT_EXPIRED: 'this conversation is closed.',
  KEY_UNAVAILABLE: 'the service is unreachable. Check the connection and try again.',
  UNAVAILABLE: 'the service is unreachable. Check the connection and try again.',
  TIMEOUT: 'the service is unreachable. Check the connection and try again.',
};

/**
 * Why an upload or download failed, in plain words (never the error's own message, which may
 * carry server detail): the size limit, the conversation's quota, a refusal, or the network.
 */
export function transferErrorText(err: unknown, what: 'upload' | 'download'): string {
  const verb = what === 'upload' ? 'Upload failed' : 'Download failed';
  const why = LatchkeyError.is(err) ? ERROR_WORDS[err.code] : undefined;
  return `${verb}: ${why ?? 'network error. Check the connection and try again.'}`;
}

export interface ProgressOptions {
  /** `data-testid` of the whole component. */
  testId: string;
  /** What is moving, e.g. "Uploading report.pdf"; the bar's accessible name. */
  label: string;
  /** The Cancel button's accessible name, e.g. "Cancel upload of report.pdf". */
  cancelLabel: string;
}

export class TransferProgress {
  readonly root: HTMLElement;
  /** Aborted by the Cancel button (or `cancel()`); hand its signal to the transfer. */
  readonly controller = new AbortController();
  #bar: HTMLElement;
  #fill: HTMLElement;
  #text: HTMLElement;
  #cancel: HTMLButtonElement;

  constructor(opts: ProgressOptions) {
    this.#fill = h('span', { class: 'lk-progress-fill' });
    this.#bar = h(
      'span',
      {
        class: 'lk-progress-bar',
        role: 'progressbar',
        'aria-label': opts.label,
        'aria-valuemin': 0,
        'aria-valuemax': 100,
        'aria-valuenow': 0,
      },
      this.#fill,
    );
    this.#text = h('span', { class: 'lk-progress-text' }, 'Starting…');
    this.#cancel = h(
      'button',
      {
        type: 'button',
        class: 'lk-retry lk-cancel',
        'data-testid': 'cancel',
        'aria-label': opts.cancelLabel,
      },
      'Cancel',
    );
    this.#cancel.addEventListener('click', () => this.cancel());
    this.root = h(
      'div',
      { class: 'lk-progress', 'data-testid': opts.testId },
      h('span', { class: 'lk-progress-label', dir: 'auto' }, ...bidiSafeText(opts.label)),
      this.#bar,
      this.#text,
      this.#cancel,
    );
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Shows `done` of `total` bytes. */
  update(done: number, total: number): void {
    const max = total > 0 ? total : 0;
    const value = Math.min(Math.max(done, 0), max);
    const percent = max === 0 ? 100 : Math.floor((value / max) * 100);
    const words = `${formatBytes(value)} of ${formatBytes(max)}`;
    // CSSOM, not a style attribute: allowed under the pages' `style-src 'self'`.
    this.#fill.style.width = `${percent}%`;
    this.#bar.setAttribute('aria-valuenow', String(percent));
    this.#bar.setAttribute('aria-valuetext', words);
    this.root.dataset.done = String(value);
    this.root.dataset.total = String(max);
    setText(this.#text, words);
  }

  /** Aborts the transfer (once) and disables the button. */
  cancel(): void {
    this.#cancel.disabled = true;
    if (!this.controller.signal.aborted) this.controller.abort();
  }

  remove(): void {
    this.root.remove();
  }
}
