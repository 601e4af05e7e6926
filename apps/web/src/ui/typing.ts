/**
 * The typing indicator of one conversation (`data-testid="typing-indicator"`, a polite live
 * region): "Agent is typing…" / "Visitor is typing…" while another member types, hidden otherwise.
 * It follows the client's `typing` events (which stop by themselves after 6 s without a refresh)
 * and is cleared when the connection changes. Our own typing goes out from the composer's input:
 * a start on each change of a non-empty text (the client throttles it), a stop when the text is
 * emptied or sent.
 */
import type { Role } from '@latchkey/protocol';
import { h, setText } from './dom.ts';

const NAMES: Record<Role, string> = {
  visitor: 'Visitor',
  agent: 'Agent',
  supervisor: 'Supervisor',
  scanner: 'Scanner',
};

export class TypingIndicator {
  readonly root: HTMLElement;
  /** Who types now, by participant id. */
  #typers = new Map<string, Role>();

  constructor() {
    this.root = h('p', {
      class: 'lk-typing',
      'data-testid': 'typing-indicator',
      'aria-live': 'polite',
      'data-active': 'false',
    });
  }

  /** A `typing` event of another member (our own are ignored by the caller). */
  update(e: { participantId: string; role: Role; state: 'start' | 'stop' }): void {
    if (e.state === 'start') this.#typers.set(e.participantId, e.role);
    else this.#typers.delete(e.participantId);
    this.#render();
  }

  /** Nobody types any more (a new connection: the old one's events are gone). */
  clear(): void {
    this.#typers.clear();
    this.#render();
  }

  #render(): void {
    const roles = [...new Set(this.#typers.values())];
    const text =
      roles.length === 0
        ? ''
        : roles.length === 1
          ? `${NAMES[roles[0] as Role]} is typing…`
          : `${roles.map((r) => NAMES[r]).join(' and ')} are typing…`;
    setText(this.root, text);
    this.root.dataset.active = String(roles.length > 0);
  }
}
