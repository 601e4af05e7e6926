/**
 * Downloading an attachment (docs/web.md "Attachments"): the client's stream of verified
 * plaintext (`openFile`) is collected, with a progress bar and Cancel on the card, into a Blob
 * of type application/octet-stream (never the declared type: the browser must not render it)
 * and saved through an `<a download="name">` of an object URL, revoked soon after. A stream that
 * errors with DECRYPT_FAILED (a changed chunk, truncation, SHA-256 mismatch) saves nothing and
 * the card says "could not decrypt".
 */
import { LatchkeyError } from '@latchkey/protocol';
import { h } from './dom.ts';
import type { FileCard } from './file-card.ts';
import { TransferProgress, isCancel, transferErrorText } from './progress.ts';

/** Opens the file's plaintext stream (client.openFile(seq, opts)). */
export type OpenFile = (opts: {
  onProgress: (done: number, total: number) => void;
  signal: AbortSignal;
}) => ReadableStream<Uint8Array> | Promise<ReadableStream<Uint8Array>>;

/** How long an object URL handed to a download stays valid: the browser reads it meanwhile. */
const REVOKE_AFTER_MS = 60_000;

/** Saves `blob` as a download named `name` (the browser sanitises the name further). */
export function saveBlob(blob: Blob, name: string, parent: Element = document.body): void {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: name, hidden: true, rel: 'noopener' });
  parent.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), REVOKE_AFTER_MS);
}

/**
 * Downloads the card's file: progress and Cancel on the card, the bytes saved once complete and
 * verified. Never throws; failures show on the card.
 */
export async function downloadFile(card: FileCard, open: OpenFile): Promise<void> {
  const { name, size } = card.info;
  card.setBusy(true);
  card.notice(null);
  const progress = new TransferProgress({
    testId: 'download-progress',
    label: `Downloading ${name}`,
    cancelLabel: `Cancel download of ${name}`,
  });
  progress.update(0, size);
  card.progressSlot.append(progress.root);
  let reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  const onAbort = (): void => void reader?.cancel().catch(() => undefined);
  progress.signal.addEventListener('abort', onAbort, { once: true });
  try {
    const stream = await open({
      onProgress: (done, total) => progress.update(done, total),
      signal: progress.signal,
    });
    reader = stream.getReader();
    if (progress.signal.aborted) onAbort();
    const chunks: Uint8Array<ArrayBuffer>[] = [];
    let got = 0;
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      got += r.value.length;
      // The client checks size and hash; this only bounds what the page holds.
      if (got > size) throw new LatchkeyError('DECRYPT_FAILED', 'longer than declared');
      chunks.push(r.value as Uint8Array<ArrayBuffer>);
      progress.update(got, size);
    }
    if (progress.signal.aborted) throw new DOMException('cancelled', 'AbortError');
    if (got !== size) throw new LatchkeyError('DECRYPT_FAILED', 'shorter than declared');
    saveBlob(new Blob(chunks, { type: 'application/octet-stream' }), name, card.root);
  } catch (err) {
    if (LatchkeyError.is(err, 'DECRYPT_FAILED')) card.showDecryptFailed();
    else if (isCancel(err, progress.signal)) card.notice('Download cancelled.', 'info');
    else card.notice(transferErrorText(err, 'download'));
  } finally {
    progress.signal.removeEventListener('abort', onAbort);
    progress.remove();
    card.setBusy(false);
  }
}
