/**
 * Where attachments come from in a conversation (docs/web.md "Attachments"): the Attach button
 * (`data-testid="attach"`, a labelled button that opens the browser's file picker), files dropped
 * onto the conversation, and a file or image pasted from the clipboard. Each hands its files to
 * one callback (uploads.ts sends them). A paste that carries text as well (copying from an office
 * document puts a picture of it next to the text) stays a text paste.
 */
import { h } from './dom.ts';

/** Most files taken from one pick, drop or paste; the rest are ignored. */
export const MAX_FILES_AT_ONCE = 10;

/** A paperclip (SVG, no emoji font needed), hidden from screen readers. */
function clipIcon(): SVGSVGElement {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 16 16');
  svg.setAttribute('width', '18');
  svg.setAttribute('height', '18');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('fill', 'none');
  path.setAttribute('stroke', 'currentColor');
  path.setAttribute('stroke-width', '1.6');
  path.setAttribute('stroke-linecap', 'round');
  path.setAttribute(
    'd',
    'M10.5 4.5 5.8 9.2a1.5 1.5 0 0 0 2.1 2.1l5-5a3 3 0 0 0-4.2-4.2l-5 5a4.5 4.5 0 0 0 6.4 6.4l4.2-4.2',
  );
  svg.append(path);
  return svg;
}

/** Whether a drag carries files (not text or a link being dragged around the page). */
function carriesFiles(dt: DataTransfer | null): boolean {
  return dt !== null && Array.from(dt.types).includes('Files');
}

export class Attachments {
  /** The Attach button, for the composer. */
  readonly button: HTMLButtonElement;
  /** The hidden file input the button opens. */
  readonly input: HTMLInputElement;
  #onFiles: (files: File[]) => void;
  #enabled = true;

  constructor(onFiles: (files: File[]) => void) {
    this.#onFiles = onFiles;
    this.input = h('input', {
      type: 'file',
      multiple: true,
      class: 'lk-sr',
      tabindex: -1,
      'aria-hidden': 'true',
      'data-testid': 'attach-input',
    });
    this.button = h(
      'button',
      {
        type: 'button',
        class: 'lk-btn lk-btn-quiet lk-attach',
        'data-testid': 'attach',
        'aria-label': 'Attach a file',
        title: 'Attach a file (or drop or paste one)',
      },
      clipIcon(),
    );
    this.button.addEventListener('click', () => {
      if (this.#enabled) this.input.click();
    });
    this.input.addEventListener('change', () => {
      const files = Array.from(this.input.files ?? []);
      // Cleared, so that picking the same file again fires `change` again.
      this.input.value = '';
      this.#take(files);
    });
  }

  /** Stops taking files (a supervisor reads only; a closed conversation). */
  disable(): void {
    this.#enabled = false;
    this.button.disabled = true;
  }

  /**
   * Files dropped anywhere on `target` are taken; while a file is dragged over it,
   * `data-drop="active"` marks it.
   */
  bindDrop(target: HTMLElement): void {
    let depth = 0;
    const clear = (): void => {
      depth = 0;
      delete target.dataset.drop;
    };
    target.addEventListener('dragenter', (ev) => {
      if (!this.#enabled || !carriesFiles(ev.dataTransfer)) return;
      ev.preventDefault();
      depth++;
      target.dataset.drop = 'active';
    });
    target.addEventListener('dragover', (ev) => {
      if (!this.#enabled || !carriesFiles(ev.dataTransfer)) return;
      ev.preventDefault();
      ev.dataTransfer!.dropEffect = 'copy';
      target.dataset.drop = 'active';
    });
    target.addEventListener('dragleave', () => {
      depth = Math.max(0, depth - 1);
      if (depth === 0) delete target.dataset.drop;
    });
    target.addEventListener('drop', (ev) => {
      if (!this.#enabled || !carriesFiles(ev.dataTransfer)) return;
      ev.preventDefault();
      clear();
      this.#take(Array.from(ev.dataTransfer!.files));
    });
  }

  /** A file or image pasted into `target` (or anything inside it) is taken. */
  bindPaste(target: HTMLElement): void {
    target.addEventListener('paste', (ev) => {
      const data = ev.clipboardData;
      if (!this.#enabled || !data || data.files.length === 0) return;
      if (Array.from(data.types).includes('text/plain')) return; // a text paste
      ev.preventDefault();
      this.#take(Array.from(data.files));
    });
  }

  #take(files: File[]): void {
    if (!this.#enabled) return;
    const picked = files.slice(0, MAX_FILES_AT_ONCE);
    if (picked.length > 0) this.#onFiles(picked);
  }
}
