/**
 * The message list of one conversation (conversation.ts): the `<ol role="log">` and how each
 * message is drawn in it, in seq order. Message states (`data-state`): `sending`, `delivered`
 * (has `data-seq`), `failed`, `undecryptable` (shown as "Could not decrypt this message", never
 * its bytes) and `suspect` (`data-integrity` names the failed check, a warning says so, its text
 * only inside the marked warning, a MISSING one with one `gap` element before it).
 *
 * Text and sender names are bidi-isolated (`dir="auto"`, `<bdi>`), explicit directional controls
 * shown as visible marks (bidi.ts). Text goes in through textContent only (dom.ts).
 */
import type { FailedMessage } from '@latchkey/client';
import type { Role } from '@latchkey/protocol';
import { bidiSafeText } from './bidi.ts';
import { clock, h, setText, uid } from './dom.ts';

const STATE_TEXT = { sending: 'Sending…', delivered: 'Delivered', failed: 'Not sent' } as const;
export type SendState = keyof typeof STATE_TEXT;

/** The integrity checks of the client (`FailedMessage.integrity`), as the warning names them. */
const INTEGRITY_TEXT = {
  REPLAYED: ['replayed', 'a copy of a message that was already delivered.'],
  REORDERED: ['reordered', 'it arrived out of the order in which it was sent.'],
  MISSING: ['messages missing', 'earlier messages of this sender are missing.'],
  FORKED: ['forked history', 'the history shown here differs from what the sender saw.'],
  STALE_EPOCH: ['stale key', 'it was sealed with an outdated key after the key had changed.'],
  SENDER_REMOVED: ['sender removed', 'it is signed by a participant who had already been removed.'],
  CLOCK: ['clock', 'its send time is implausible (too far in the future or going backwards).'],
} as const;
export type IntegrityName = keyof typeof INTEGRITY_TEXT;

export function integrityName(code: unknown): IntegrityName | null {
  return typeof code === 'string' && Object.hasOwn(INTEGRITY_TEXT, code)
    ? (code as IntegrityName)
    : null;
}

/** One message as drawn: `text` null for one that could not be opened, `body` replaces it. */
export interface ItemInput {
  own: boolean;
  text: string | null;
  sender: string;
  role: Role | null;
  sentAt: number | null;
  body?: HTMLElement[];
}

/** What of a drawn message changes later: its time, its send state (own messages only). */
interface RowParts {
  time: HTMLTimeElement;
  state: HTMLElement | null;
  sentAt?: number;
}

/**
 * The skeleton every message is cloned from: meta line (sender, time, state), no body yet. The
 * sender is isolated like the text: whatever it holds stays inside its own box.
 */
function row(own: boolean): HTMLLIElement {
  const meta = h(
    'div',
    { class: 'lk-meta' },
    h('bdi', { class: 'lk-sender' }),
    h('time', { class: 'lk-time' }),
  );
  if (own) meta.append(h('span', { class: 'lk-state' }));
  return h('li', { class: 'lk-msg', 'data-testid': 'message', 'data-own': String(own) }, meta);
}
const skeletons = new Map<boolean, HTMLLIElement>();
/** Frames for which a list scrolled to its bottom follows rows drawn there for the first time. */
const FOLLOW_FRAMES = 4;

export class MessageList {
  readonly root: HTMLOListElement;
  #empty: HTMLElement;
  /** The element shown for each seq. */
  #shown = new Map<number, HTMLLIElement>();
  /** The `gap` element shown before a message (MISSING), moved with it. */
  #gaps = new WeakMap<HTMLElement, HTMLElement>();
  /** The parts of each drawn message that change after it is drawn. */
  #parts = new WeakMap<Element, RowParts>();
  /** A scroll waits for the next frame (forced or not); null: none waits. */
  #scrollForced: boolean | null = null;
  /** The list's scrollHeight at the last scroll (null: never scrolled). */
  #scrolledHeight: number | null = null;

  constructor() {
    this.#empty = h('li', { class: 'lk-empty' }, 'No messages yet.');
    this.root = h(
      'ol',
      {
        class: 'lk-messages',
        role: 'log',
        'aria-live': 'polite',
        'aria-label': 'Messages',
        tabindex: 0,
      },
      this.#empty,
    );
  }

  /** The receipt (`data-receipt`) of an own message stored at `seq` (receipts.ts). */
  receiptOf: (seq: number) => string = () => 'sent';

  /** Whether something is shown at `seq`. */
  has(seq: number): boolean {
    return this.#shown.has(seq);
  }

  /** Appends an unsent item at the end (own messages wait there for their seq). */
  append(el: HTMLLIElement): void {
    this.root.append(el);
  }

  /** An own message is stored at `seq`: mark it delivered and move it into seq order. */
  settle(el: HTMLLIElement, seq: number, sentAt: number | null): void {
    const other = this.#shown.get(seq);
    if (other && other !== el) {
      el.remove();
      return;
    }
    el.dataset.seq = String(seq);
    if (el.dataset.own === 'true') el.dataset.receipt = this.receiptOf(seq);
    if (sentAt !== null) this.#setTime(el, sentAt);
    this.setState(el, 'delivered');
    this.#shown.set(seq, el);
    this.#place(el, seq);
  }

  /** Shows a stored message that failed to open at its seq. */
  showUndecryptable(f: FailedMessage, own: boolean): void {
    const el = this.item({ own, text: null, sender: f.senderId, role: null, sentAt: null });
    el.dataset.seq = String(f.seq);
    el.dataset.state = 'undecryptable';
    this.#shown.set(f.seq, el);
    this.#place(el, f.seq);
  }

  /**
   * Shows a message that failed a transcript or membership check at its seq: a suspect element
   * with the check's code and a warning; its text (never for REPLAYED) only inside the marked
   * block; for MISSING one gap element before it.
   */
  showSuspect(
    f: FailedMessage,
    check: IntegrityName | null,
    own: boolean,
    role: Role | null,
  ): void {
    const [name, why] = check
      ? INTEGRITY_TEXT[check]
      : (['unknown', 'it failed a check of this client.'] as const);
    const warningId = uid('lk-warn');
    const warning = h(
      'p',
      { class: 'lk-warning', id: warningId },
      h('strong', {}, `⚠ This message failed an integrity check: ${name}`),
      ` — ${why}`,
    );
    const el = this.item({
      own,
      text: null,
      sender: f.senderId,
      role,
      sentAt: f.sentAt ?? null,
      body: [warning],
    });
    if (typeof f.text === 'string' && check !== 'REPLAYED') {
      el.append(
        h(
          'blockquote',
          { class: 'lk-suspect-text' },
          h('span', { class: 'lk-suspect-label' }, 'Unverified text: '),
          h('span', { class: 'lk-suspect-body', dir: 'auto' }, ...bidiSafeText(f.text)),
        ),
      );
    }
    el.dataset.seq = String(f.seq);
    el.dataset.state = 'suspect';
    el.dataset.integrity = check ?? 'UNKNOWN';
    el.setAttribute('aria-describedby', warningId);
    if (check === 'MISSING') {
      const n =
        typeof f.missing === 'number' && Number.isSafeInteger(f.missing) && f.missing > 0
          ? f.missing
          : null;
      const text =
        n === null ? 'Messages missing' : `${n} ${n === 1 ? 'message' : 'messages'} missing`;
      this.#gaps.set(
        el,
        h(
          'li',
          { class: 'lk-gap', 'data-testid': 'gap', role: 'note', 'data-missing': n ?? '' },
          `${text} from ${f.senderId} before the next message`,
        ),
      );
    }
    this.#shown.set(f.seq, el);
    this.#place(el, f.seq);
  }

  /** Draws one message (not yet placed); the list is no longer empty. */
  item(m: ItemInput): HTMLLIElement {
    const who = m.own ? 'You' : m.role ? `${m.sender} (${m.role})` : m.sender;
    // A clone of one drawn skeleton: a history of 1,000 rows made ~10 elements and attributes
    // one by one per row. Text still goes in through textContent only.
    let skeleton = skeletons.get(m.own);
    if (!skeleton) skeletons.set(m.own, (skeleton = row(m.own)));
    const el = skeleton.cloneNode(true) as HTMLLIElement;
    const meta = el.firstElementChild!;
    const time = meta.children[1] as HTMLTimeElement;
    setText(meta.firstElementChild!, who);
    el.dataset.sender = m.sender;
    this.#parts.set(el, { time, state: m.own ? (meta.lastElementChild as HTMLElement) : null });
    if (m.body) el.append(...m.body);
    else if (m.text === null) {
      el.append(h('p', { class: 'lk-text' }, '⚠ Could not decrypt this message.'));
      el.setAttribute('aria-label', `Message from ${m.sender} could not decrypt`);
    } else el.append(h('p', { class: 'lk-text', dir: 'auto' }, ...bidiSafeText(m.text)));
    if (m.sentAt !== null) this.#setTime(el, m.sentAt);
    this.#empty.remove();
    return el;
  }

  setState(el: HTMLElement, state: SendState): void {
    el.dataset.state = state;
    const label = this.#parts.get(el)?.state;
    if (label) {
      label.dataset.state = state;
      setText(label, STATE_TEXT[state]);
    }
  }

  /**
   * Scrolls to the newest message when forced or when the reader was near it, once per frame:
   * reading the layout for every message made drawing a history quadratic (1,000 rows: seconds).
   * "Near" is measured against the list's height at the last scroll, before what came since.
   * Rows off screen are not laid out (`content-visibility: auto`, styles.ts) and count with an
   * estimated height until first drawn, so the bottom can move once the rows scrolled to are
   * drawn: for a few frames after, a list still where it was put follows it.
   */
  scroll(force: boolean): void {
    const queued = this.#scrollForced !== null;
    this.#scrollForced = this.#scrollForced === true || force;
    if (queued) return;
    requestAnimationFrame(() => {
      const l = this.root;
      const before = this.#scrolledHeight ?? 0;
      const bottom = this.#scrollForced || before - l.scrollTop - l.clientHeight < 120;
      if (bottom) l.scrollTop = l.scrollHeight;
      this.#scrolledHeight = l.scrollHeight;
      this.#scrollForced = null;
      if (bottom) this.#follow(l.scrollTop, FOLLOW_FRAMES);
    });
  }

  /** Keeps the list at its bottom while rows drawn for the first time change its height. */
  #follow(top: number, frames: number): void {
    requestAnimationFrame(() => {
      const l = this.root;
      // A newer scroll is queued (it decides), or the reader has scrolled away: leave it.
      if (this.#scrollForced !== null || l.scrollTop < top - 1) return;
      if (l.scrollHeight === this.#scrolledHeight) return;
      l.scrollTop = l.scrollHeight;
      this.#scrolledHeight = l.scrollHeight;
      if (frames > 1) this.#follow(l.scrollTop, frames - 1);
    });
  }

  #setTime(el: HTMLElement, sentAt: number): void {
    const parts = this.#parts.get(el);
    if (!parts || parts.sentAt === sentAt) return;
    parts.sentAt = sentAt;
    parts.time.dateTime = new Date(sentAt).toISOString();
    setText(parts.time, clock(sentAt));
  }

  /**
   * Inserts `el` (and its gap, if any, right before it) before the first message with a higher
   * seq or still unsent, and before that message's own gap.
   */
  #place(el: HTMLLIElement, seq: number): void {
    let before: Element | null = null;
    // The list stays in seq order with unsent items last, so when the last item has a lower seq
    // `el` goes at the end: in-order arrival (history, live) skips the O(n) scan below.
    const last = this.root.lastElementChild;
    const inOrder = last !== el && last instanceof HTMLElement && Number(last.dataset.seq) < seq;
    if (!inOrder)
      for (const child of Array.from(this.root.children)) {
        if (child === el || !(child instanceof HTMLElement) || child.dataset.testid !== 'message')
          continue;
        const s = child.dataset.seq;
        if (s === undefined || Number(s) > seq) {
          before = this.#gaps.get(child) ?? child;
          break;
        }
      }
    if (before) this.root.insertBefore(el, before);
    else if (el.parentElement !== this.root || el.nextElementSibling !== null) this.root.append(el);
    const gap = this.#gaps.get(el);
    if (gap && el.previousElementSibling !== gap) this.root.insertBefore(gap, el);
  }
}
