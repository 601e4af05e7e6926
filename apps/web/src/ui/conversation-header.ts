/**
 * The head of one conversation (conversation.ts): its title, the connection status
 * (`data-testid="connection-status"`, `data-status`), and the "end-to-end encrypted" badge with
 * the content key's fingerprint (`data-testid="e2e-fingerprint"`, `data-fingerprint`,
 * `data-epoch`), which follows the newest epoch and never goes back to an older one.
 */
import { h, setText, uid } from './dom.ts';

export type StatusName = 'connecting' | 'connected' | 'reconnecting' | 'offline';

const STATUS_TEXT: Record<StatusName, string> = {
  connecting: 'Connecting…',
  connected: 'Connected',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
};

/** A small padlock (SVG, no emoji font needed), hidden from screen readers. */
function lockIcon(): SVGSVGElement {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 16 16');
  svg.setAttribute('width', '14');
  svg.setAttribute('height', '14');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'lk-lock');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('fill', 'currentColor');
  path.setAttribute('d', 'M4 7V5a4 4 0 1 1 8 0v2h1v8H3V7h1zm2 0h4V5a2 2 0 1 0-4 0v2z');
  svg.append(path);
  return svg;
}

export class ConversationHeader {
  readonly root: HTMLElement;
  /** The id of the fingerprint text (the composer is described by it). */
  readonly fingerprintId = uid('lk-fp');
  #status: HTMLElement;
  #badge: HTMLElement;
  #fpText: HTMLElement;
  /** The epoch whose fingerprint the badge shows (-1: none yet). */
  #epoch = -1;

  constructor(title: string) {
    this.#status = h(
      'span',
      {
        class: 'lk-status',
        role: 'status',
        'data-testid': 'connection-status',
        'data-status': 'connecting',
      },
      STATUS_TEXT.connecting,
    );
    this.#fpText = h('span', { class: 'lk-fp', id: this.fingerprintId }, '…');
    this.#badge = h(
      'p',
      {
        class: 'lk-e2e',
        'data-testid': 'e2e-fingerprint',
        'data-fingerprint': '',
        title:
          'Compare this key fingerprint with the other side: the same value means the same key.',
      },
      lockIcon(),
      h('strong', {}, 'End-to-end encrypted'),
      h('span', {}, '· key fingerprint'),
      this.#fpText,
    );
    this.root = h(
      'header',
      { class: 'lk-head' },
      h('h2', { class: 'lk-title' }, title),
      this.#status,
      this.#badge,
    );
  }

  /** The fingerprint the badge shows, else null. */
  get fingerprint(): string | null {
    return this.#badge.dataset.fingerprint || null;
  }

  /** The epoch the badge shows (-1: none yet). */
  get epoch(): number {
    return this.#epoch;
  }

  showStatus(status: StatusName): void {
    if (this.#status.dataset.status === status) return;
    this.#status.dataset.status = status;
    setText(this.#status, STATUS_TEXT[status]);
  }

  /**
   * Shows the fingerprint of `epoch`, unless the badge already shows a newer one (an old epoch
   * never takes it back).
   */
  showFingerprint(fp: string, epoch: number): void {
    if (epoch < this.#epoch) return;
    this.#epoch = epoch;
    this.#badge.dataset.fingerprint = fp;
    this.#badge.dataset.epoch = String(epoch);
    setText(this.#fpText, fp);
  }
}
