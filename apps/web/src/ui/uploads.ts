/**
 * Sending attachments (docs/web.md "Attachments"): each file taken by attachments.ts gets a
 * thumbnail made in the browser when it is an image (thumbnail.ts), then goes to
 * `client.sendFile` (encrypted in the client, uploaded as ciphertext) with a progress bar
 * (`data-testid="upload-progress"`) and a Cancel button that aborts it; a cancelled upload sends
 * no message. Files go out one after another, in the order taken. A failure stays visible as a
 * plain sentence (`data-testid="upload-error"`, role alert) until dismissed.
 */
import type { LatchkeyClient } from '@latchkey/client';
import { bidiSafeText } from './bidi.ts';
import { h } from './dom.ts';
import { TransferProgress, isCancel, transferErrorText } from './progress.ts';
import { makeThumbnail } from './thumbnail.ts';

/** What uploading uses of a client. */
export type UploadClient = Pick<LatchkeyClient, 'sendFile'>;

/** Most error rows kept; older ones go. */
const MAX_ERRORS = 3;

export class Uploads {
  /** The strip above the composer that holds running uploads and errors. */
  readonly root: HTMLElement;
  #client: () => UploadClient | null;
  #queue: Promise<void> = Promise.resolve();
  #errors: HTMLElement[] = [];

  /** @param client - The client of the current connection, or null while there is none. */
  constructor(client: () => UploadClient | null) {
    this.#client = client;
    this.root = h('div', { class: 'lk-uploads', 'aria-label': 'Uploads' });
  }

  /** Queues `files` for sending, each with its progress bar shown at once. */
  add(files: File[]): void {
    for (const file of files) {
      const name = file.name || 'pasted file';
      const progress = new TransferProgress({
        testId: 'upload-progress',
        label: `Uploading ${name}`,
        cancelLabel: `Cancel upload of ${name}`,
      });
      progress.root.dataset.name = name;
      this.root.append(progress.root);
      this.#queue = this.#queue.then(() => this.#send(file, name, progress));
    }
  }

  async #send(file: File, name: string, progress: TransferProgress): Promise<void> {
    try {
      if (progress.signal.aborted) return;
      const thumbnail = await makeThumbnail(file);
      if (progress.signal.aborted) return;
      const client = this.#client();
      if (!client) {
        this.#error(`Upload of ${name} failed: not connected. Try again once connected.`);
        return;
      }
      progress.update(0, file.size);
      // A pasted image has no name of its own: it gets one, with the type's usual extension.
      const named = file.name ? file : new File([file], pastedName(file.type), { type: file.type });
      await client.sendFile(named, {
        ...(thumbnail ? { thumbnail } : {}),
        onProgress: (done, total) => progress.update(done, total),
        signal: progress.signal,
      });
    } catch (err) {
      if (!isCancel(err, progress.signal))
        this.#error(`${name}: ${transferErrorText(err, 'upload')}`);
    } finally {
      progress.remove();
    }
  }

  #error(text: string): void {
    const dismiss = h(
      'button',
      { type: 'button', class: 'lk-retry', 'aria-label': 'Dismiss this error' },
      'Dismiss',
    );
    const row = h(
      'p',
      { class: 'lk-upload-error', role: 'alert', 'data-testid': 'upload-error' },
      h('span', { dir: 'auto' }, ...bidiSafeText(text)),
      dismiss,
    );
    dismiss.addEventListener('click', () => {
      row.remove();
      this.#errors = this.#errors.filter((e) => e !== row);
    });
    this.#errors.push(row);
    while (this.#errors.length > MAX_ERRORS) this.#errors.shift()?.remove();
    this.root.append(row);
  }
}

/** A name for a pasted file (clipboard images come without one). */
export function pastedName(type: string): string {
  const ext: Record<string, string> = {
    'image/png': 'png',
    'image/jpeg': 'jpg',
    'image/webp': 'webp',
    'image/gif': 'gif',
  };
  const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, '-');
  return `pasted-${stamp}.${ext[type] ?? 'bin'}`;
}
