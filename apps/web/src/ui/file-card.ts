/**
 * The card a file message is drawn as (`data-testid="file"`, `data-scan`): an icon by declared
 * type, the name (text only, directional controls shown as marks: "invoice‮fdp.exe" cannot pose
 * as a PDF), the size, a scan badge, an inline preview from the decrypted thumbnail, and a
 * Download button that is disabled, with the reason next to it, while the file is blocked
 * (pending while the deployment scans, infected, scan error).
 *
 * The preview is an `<img>` of an object URL of a Blob whose type is the thumbnail's declared
 * type, and only when that is image/jpeg, image/png or image/webp and the bytes' own header
 * agrees (at most 4096 px a side): never the file's own declared type, never HTML or SVG; the URL is revoked once the image has loaded (or failed). What the
 * sender declares (`type`) only picks the icon.
 */
import { FILE_LIMITS, type ScanState } from '@latchkey/protocol';
import { bidiSafeText } from './bidi.ts';
import { h, setText, uid } from './dom.ts';
import { readImageHeader } from './image-header.ts';
import { formatBytes } from './progress.ts';

/** What a card shows of a file: the client's FileInfo. */
export interface CardFile {
  name: string;
  size: number;
  /** Declared media type: picks the icon, nothing else. */
  type: string;
  thumbnail: { type: string; width: number; height: number } | null;
  scan: ScanState;
  signature?: string;
}

export interface FileCardOptions {
  /** The deployment runs a scanner: `pending` blocks the download until `clean`. */
  scanning: boolean;
  /** The decrypted thumbnail bytes (client.thumbnail(seq)); null or a rejection: no preview. */
  loadThumbnail?: () => Promise<Uint8Array | null>;
  /** The Download button was pressed (not called while blocked). */
  onDownload?: (card: FileCard) => void;
}

/** The thumbnail types an `<img>` is made of (the thumbnail's declared type, checked). */
export const PREVIEW_TYPES: ReadonlySet<string> = new Set([
  'image/jpeg',
  'image/png',
  'image/webp',
]);
const SCANS: readonly ScanState[] = ['unscanned', 'pending', 'clean', 'infected', 'error'];
const SIGNATURE_MAX = 200;
/** Largest side of a thumbnail's picture (ThumbnailRef's width and height). */
const THUMB_MAX_SIDE = 4096;
/** Largest preview box in CSS pixels (the thumbnail's declared size is scaled into it). */
const PREVIEW_MAX = 320;

/** A scan state from anything: an unknown value is shown as a failed scan (blocked). */
export function scanState(value: unknown): ScanState {
  return SCANS.includes(value as ScanState) ? (value as ScanState) : 'error';
}

/** The badge text of a scan state. */
export function scanText(scan: ScanState, signature?: string): string {
  switch (scan) {
    case 'pending':
      return 'Scanning…';
    case 'clean':
      return 'Clean';
    case 'infected':
      return `Blocked: ${signature?.slice(0, SIGNATURE_MAX) || 'malware found'}`;
    case 'unscanned':
      return 'Not scanned';
    case 'error':
      return 'Scan failed';
  }
}

/** Why the file may not be downloaded, or null when it may. */
export function blockReason(scan: ScanState, scanning: boolean): string | null {
  if (scan === 'infected') return 'Download blocked: the virus scanner flagged this file.';
  if (scan === 'error') return 'Download blocked: the virus scan failed.';
  if (scan === 'pending' && scanning) return 'Download is available once the virus scan is done.';
  return null;
}

/** A short label of the declared type for the icon: never used to render the file. */
export function iconKind(type: string): { kind: string; label: string } {
  const t = type.toLowerCase();
  if (t.startsWith('image/')) return { kind: 'image', label: 'IMG' };
  if (t.startsWith('video/')) return { kind: 'video', label: 'VID' };
  if (t.startsWith('audio/')) return { kind: 'audio', label: 'AUD' };
  if (t === 'application/pdf') return { kind: 'pdf', label: 'PDF' };
  if (/zip|compressed|tar|x-7z|x-rar|gzip/.test(t)) return { kind: 'archive', label: 'ZIP' };
  if (t.startsWith('text/') || t === 'application/json') return { kind: 'text', label: 'TXT' };
  return { kind: 'file', label: 'FILE' };
}

export class FileCard {
  readonly root: HTMLElement;
  readonly info: CardFile;
  #opts: FileCardOptions;
  #badge: HTMLElement;
  #download: HTMLButtonElement;
  #reason: HTMLElement;
  #previewSlot: HTMLElement;
  #progressSlot: HTMLElement;
  #notice: HTMLElement;
  #busy = false;
  #previewUrl: string | null = null;

  constructor(info: CardFile, opts: FileCardOptions) {
    this.info = { ...info, scan: scanState(info.scan) };
    this.#opts = opts;
    const icon = iconKind(info.type);
    const reasonId = uid('lk-file-why');
    this.#badge = h('span', { class: 'lk-scan', 'data-testid': 'scan-badge' });
    this.#reason = h('p', { class: 'lk-file-why', id: reasonId });
    this.#notice = h('p', { class: 'lk-file-notice', role: 'alert', hidden: true });
    this.#previewSlot = h('div', { class: 'lk-file-preview' });
    this.#progressSlot = h('div', { class: 'lk-file-progress' });
    this.#download = h(
      'button',
      {
        type: 'button',
        class: 'lk-btn lk-btn-quiet lk-file-dl',
        'data-testid': 'download',
        'aria-label': `Download ${info.name}`,
        'aria-describedby': reasonId,
      },
      'Download',
    );
    this.#download.addEventListener('click', () => {
      if (this.#busy || blockReason(this.info.scan, this.#opts.scanning) !== null) return;
      this.#opts.onDownload?.(this);
    });
    this.root = h(
      'div',
      { class: 'lk-file', 'data-testid': 'file' },
      this.#previewSlot,
      h(
        'div',
        { class: 'lk-file-row' },
        h(
          'span',
          { class: 'lk-file-icon', 'data-kind': icon.kind, 'aria-hidden': 'true' },
          icon.label,
        ),
        h(
          'span',
          { class: 'lk-file-meta' },
          h(
            'span',
            { class: 'lk-file-name', dir: 'auto', 'data-testid': 'file-name' },
            ...bidiSafeText(info.name),
          ),
          h('span', { class: 'lk-file-size' }, formatBytes(info.size)),
        ),
        this.#badge,
        this.#download,
      ),
      this.#reason,
      this.#progressSlot,
      this.#notice,
    );
    this.#render();
    void this.#loadPreview();
  }

  /** A verdict arrived (the client's `scan` event): badge, button and preview follow it. */
  setScan(scan: ScanState, signature?: string): void {
    this.info.scan = scanState(scan);
    if (signature === undefined) delete this.info.signature;
    else this.info.signature = signature;
    this.#render();
    if (this.#noPreview()) this.#dropPreview();
    else if (this.#previewSlot.childElementCount === 0) void this.#loadPreview();
  }

  /** Where a download's progress bar goes. */
  get progressSlot(): HTMLElement {
    return this.#progressSlot;
  }

  /** While downloading, the button is disabled (one download at a time). */
  setBusy(busy: boolean): void {
    this.#busy = busy;
    this.#render();
  }

  /** Shows a plain message on the card (e.g. "Could not decrypt this file."); null clears it. */
  notice(text: string | null, kind: 'error' | 'info' = 'error'): void {
    this.#notice.hidden = text === null;
    this.#notice.dataset.kind = kind;
    setText(this.#notice, text ?? '');
    if (text === null) delete this.root.dataset.error;
  }

  /** The file failed verification while downloading: it is shown as such, never its bytes. */
  showDecryptFailed(): void {
    this.notice('⚠ Could not decrypt this file: it was changed or damaged after it was sent.');
    this.root.dataset.error = 'decrypt';
  }

  /** Revokes what the card holds (its preview's object URL, if still loading). */
  dispose(): void {
    this.#revoke();
  }

  #render(): void {
    const { scan, signature } = this.info;
    this.root.dataset.scan = scan;
    this.#badge.dataset.scan = scan;
    this.#badge.replaceChildren(...bidiSafeText(scanText(scan, signature)));
    const reason = blockReason(scan, this.#opts.scanning);
    this.#download.disabled = this.#busy || reason !== null;
    this.#reason.hidden = reason === null;
    setText(this.#reason, reason ?? '');
  }

  async #loadPreview(): Promise<void> {
    const thumb = this.info.thumbnail;
    const load = this.#opts.loadThumbnail;
    if (!thumb || !load || !PREVIEW_TYPES.has(thumb.type) || this.#noPreview()) return;
    if (this.#previewSlot.childElementCount > 0) return; // shown, or on its way
    const scale = Math.min(1, PREVIEW_MAX / Math.max(thumb.width, thumb.height, 1));
    const width = Math.max(1, Math.round(thumb.width * scale));
    const height = Math.max(1, Math.round(thumb.height * scale));
    // Its room is kept while the thumbnail is fetched and decrypted, so nothing jumps after.
    const box = h('span', { class: 'lk-thumb lk-thumb-wait', 'aria-hidden': 'true' });
    box.style.width = `${width}px`;
    box.style.aspectRatio = `${width} / ${height}`;
    this.#previewSlot.append(box);
    let bytes: Uint8Array | null;
    try {
      bytes = await load();
    } catch {
      bytes = null;
    }
    // A verdict may have come in meanwhile (and dropped the box).
    if (!box.isConnected || this.#noPreview()) return;
    // The bytes must be a picture of the declared type, and no bigger than a thumbnail may be
    // (a small file can declare a huge picture): else no preview.
    const header =
      bytes && bytes.length <= FILE_LIMITS.maxThumbnailBytes ? readImageHeader(bytes) : null;
    if (
      !bytes ||
      !header ||
      header.type !== thumb.type ||
      header.width > THUMB_MAX_SIDE ||
      header.height > THUMB_MAX_SIDE
    ) {
      box.remove();
      return;
    }
    const url = URL.createObjectURL(
      new Blob([bytes as Uint8Array<ArrayBuffer>], { type: thumb.type }),
    );
    this.#previewUrl = url;
    const img = h('img', {
      class: 'lk-thumb',
      'data-testid': 'file-preview',
      alt: `Preview of ${this.info.name}`,
      width,
      height,
      decoding: 'async',
    });
    const done = (): void => this.#revoke();
    img.addEventListener('load', done, { once: true });
    img.addEventListener(
      'error',
      () => {
        done();
        img.remove();
      },
      { once: true },
    );
    img.src = url;
    box.replaceWith(img);
  }

  /** A file the scanner flagged (or failed on) shows no preview either. */
  #noPreview(): boolean {
    return this.info.scan === 'infected' || this.info.scan === 'error';
  }

  #dropPreview(): void {
    this.#revoke();
    this.#previewSlot.replaceChildren();
  }

  #revoke(): void {
    if (this.#previewUrl === null) return;
    URL.revokeObjectURL(this.#previewUrl);
    this.#previewUrl = null;
  }
}
