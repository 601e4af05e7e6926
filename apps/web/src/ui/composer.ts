/**
 * The composer of one conversation (conversation.ts): a labelled textarea
 * (`data-testid="composer"`) and a Send button (`data-testid="send"`). Enter sends, Shift+Enter
 * breaks the line, and nothing is sent while an IME is composing. Changes of the text are
 * reported (`onInput`) for the typing indicator.
 */
import { h, uid } from './dom.ts';

export class Composer {
  readonly root: HTMLFormElement;
  #input: HTMLTextAreaElement;
  #button: HTMLButtonElement;

  /**
   * @param describedBy - The id of what describes the input (the key fingerprint).
   * @param submit - Called when the user sends (the text is in `text()`).
   */
  constructor(describedBy: string, submit: () => void) {
    const inputId = uid('lk-input');
    this.#input = h('textarea', {
      class: 'lk-input',
      id: inputId,
      rows: 2,
      'data-testid': 'composer',
      placeholder: 'Type a message, Enter to send',
      'aria-describedby': describedBy,
      maxlength: 8000,
    });
    this.#button = h('button', { class: 'lk-btn', type: 'submit', 'data-testid': 'send' }, 'Send');
    this.root = h(
      'form',
      { class: 'lk-composer', 'aria-label': 'Send a message' },
      h('label', { class: 'lk-sr', for: inputId }, 'Message'),
      this.#input,
      this.#button,
    );
    this.root.addEventListener('submit', (ev) => {
      ev.preventDefault();
      submit();
    });
    this.#input.addEventListener('keydown', (ev) => {
      // Enter sends, Shift+Enter breaks the line; never while an IME is composing.
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        submit();
      }
    });
  }

  /** Calls `listener` with the trimmed text whenever the user changes it (typing indicator). */
  onInput(listener: (text: string) => void): void {
    this.#input.addEventListener('input', () => listener(this.text()));
  }

  /** Puts a tool (the Attach button) before the text box. */
  addTool(el: HTMLElement): void {
    this.#input.before(el);
  }

  /** The typed text without surrounding white space. */
  text(): string {
    return this.#input.value.replace(/^\s+|\s+$/g, '');
  }

  clear(): void {
    this.#input.value = '';
  }

  /** Disables typing and sending, with `placeholder` as the reason when given. */
  disable(placeholder?: string): void {
    this.#input.disabled = true;
    this.#button.disabled = true;
    if (placeholder !== undefined) this.#input.placeholder = placeholder;
  }

  focus(): void {
    this.#input.focus();
  }
}
