/**
 * The agent console's queue panel (docs/web.md "Queue"): the contacts waiting unassigned, oldest
 * first, each with a Claim button; the agent's availability (available, away: away hides the
 * queue, and the backend refuses claims) and capacity (maximum concurrent contacts, with how
 * many the agent holds). It talks only to the enterprise's backend (`api`, the demo backend in
 * development), which drives the relay's queue with its admin key; exactly one claim of a
 * contact wins there, and a console that lost sees the contact leave its queue at once.
 */
import { h, setText, uid } from './dom.ts';

/** Styles of the panel, apart from styles.ts (same `lk-` scoping and contrast rules). */
const QUEUE_CSS = `
.lk-queue{border:1px solid var(--lk-line);border-radius:10px;padding:8px 10px;display:flex;flex-direction:column;gap:6px}
.lk-queue h2{font-size:14px;margin:0}
.lk-queue-agent{display:flex;flex-wrap:wrap;gap:6px 10px;align-items:center;font-size:13px}
.lk-queue-agent select,.lk-queue-agent input{font:inherit;padding:3px 6px;border:1px solid var(--lk-line);border-radius:6px;background:var(--lk-bg);color:var(--lk-fg)}
.lk-queue-agent input{width:4.5em}
.lk-queue-list{list-style:none;margin:0;padding:0;max-height:30vh;overflow-y:auto}
.lk-queue-item{display:flex;gap:8px;align-items:center;justify-content:space-between;padding:4px 0;border-top:1px solid var(--lk-line)}
.lk-queue-item:first-child{border-top:0}
.lk-queue-id{overflow-wrap:anywhere;font-size:13px}
.lk-queue-item .lk-btn{padding:4px 10px}
.lk-transfer{display:flex;flex-wrap:wrap;gap:6px;align-items:center}
.lk-transfer input{font:inherit;padding:5px 8px;border:1px solid var(--lk-line);border-radius:6px;width:10em}
`;

let adopted = false;
/** A constructed sheet, as styles.ts adopts its own (the pages' CSP allows no inline `<style>`). */
function adoptQueueStyles(): void {
  if (adopted) return;
  adopted = true;
  const sheet = new CSSStyleSheet();
  sheet.replaceSync(QUEUE_CSS);
  document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
}

export interface QueueEntryView {
  contactId: string;
  createdAt: number;
}

export interface AgentView {
  availability: 'available' | 'away';
  capacity: number;
  active: number;
}

export interface QueuePanelOptions {
  /** The backend's base URL (`/api/demo`). */
  api: string;
  /** Headers of every backend request (the demo key, the agent's name). */
  headers: Record<string, string>;
  /** A claim of this contact won: open its conversation. */
  onClaimed(contactId: string): void;
  /** Says something to screen readers (and the tests). */
  announce(text: string): void;
}

async function errorMessage(res: Response): Promise<string> {
  try {
    const body = (await res.json()) as { error?: { code?: unknown } };
    const code = body.error?.code;
    if (code === 'CONFLICT') return 'another agent claimed it first';
    if (code === 'QUOTA_EXCEEDED') return 'you are at your capacity';
    if (code === 'FORBIDDEN') return 'not allowed (away, or you released it before)';
  } catch {
    // Not JSON: the status says enough.
  }
  return `error ${res.status}`;
}

export class QueuePanel {
  readonly root: HTMLElement;
  readonly #opts: QueuePanelOptions;
  readonly #list: HTMLUListElement;
  readonly #note: HTMLElement;
  readonly #availability: HTMLSelectElement;
  readonly #capacity: HTMLInputElement;
  readonly #load: HTMLElement;
  #agent: AgentView | null = null;
  readonly #items = new Map<string, HTMLLIElement>();

  constructor(opts: QueuePanelOptions) {
    adoptQueueStyles();
    this.#opts = opts;
    const availId = uid('lk-avail');
    const capId = uid('lk-cap');
    this.#availability = h(
      'select',
      { id: availId, 'data-testid': 'availability' },
      h('option', { value: 'available' }, 'Available'),
      h('option', { value: 'away' }, 'Away'),
    );
    this.#capacity = h('input', {
      id: capId,
      type: 'number',
      min: 0,
      max: 100,
      step: 1,
      'data-testid': 'capacity',
    });
    this.#load = h('span', { 'data-testid': 'capacity-load' });
    this.#list = h('ul', { class: 'lk-queue-list', 'aria-label': 'Waiting contacts' });
    this.#note = h('p', { class: 'lk-note' }, 'No contact is waiting.');
    this.root = h(
      'section',
      { class: 'lk-queue', 'data-testid': 'queue', 'aria-label': 'Queue' },
      h('h2', {}, 'Queue'),
      h(
        'div',
        { class: 'lk-queue-agent' },
        h('label', { for: availId }, 'Availability'),
        this.#availability,
        h('label', { for: capId }, 'Capacity'),
        this.#capacity,
        this.#load,
      ),
      this.#list,
      this.#note,
    );
    this.#availability.addEventListener('change', () => {
      void this.#setAgent({ availability: this.#availability.value });
    });
    this.#capacity.addEventListener('change', () => {
      const n = Number(this.#capacity.value);
      if (Number.isInteger(n) && n >= 0 && n <= 100) void this.#setAgent({ capacity: n });
    });
  }

  #fetch(path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(`${this.#opts.api}${path}`, {
      ...init,
      headers: {
        ...this.#opts.headers,
        ...(init.body === undefined ? {} : { 'content-type': 'application/json' }),
      },
    });
  }

  async #setAgent(set: Record<string, unknown>): Promise<void> {
    const res = await this.#fetch('/agent', { method: 'PUT', body: JSON.stringify(set) });
    if (!res.ok) {
      this.#opts.announce(`Could not change your status: ${await errorMessage(res)}.`);
      return;
    }
    this.#renderAgent(((await res.json()) as { agent: AgentView }).agent);
    await this.refresh();
  }

  #renderAgent(a: AgentView): void {
    this.#agent = a;
    this.#availability.value = a.availability;
    if (document.activeElement !== this.#capacity) this.#capacity.value = String(a.capacity);
    setText(this.#load, `${a.active} of ${a.capacity} contacts`);
    this.root.dataset.availability = a.availability;
  }

  /** Reloads the agent's state and the waiting contacts. */
  async refresh(): Promise<void> {
    try {
      const agent = await this.#fetch('/agent');
      if (agent.ok) this.#renderAgent(((await agent.json()) as { agent: AgentView }).agent);
      const res = await this.#fetch('/queue');
      if (res.ok) this.#render(((await res.json()) as { waiting: QueueEntryView[] }).waiting);
    } catch {
      // Backend unreachable: the next refresh tries again.
    }
  }

  #render(waiting: QueueEntryView[]): void {
    const away = this.#agent?.availability === 'away';
    const ids = new Set(waiting.map((e) => e.contactId));
    for (const [id, li] of this.#items)
      if (!ids.has(id) || away) {
        li.remove();
        this.#items.delete(id);
      }
    if (!away) {
      for (const e of waiting) if (!this.#items.has(e.contactId)) this.#add(e);
      waiting.forEach((e, i) => {
        const li = this.#items.get(e.contactId);
        if (li && this.#list.children[i] !== li)
          this.#list.insertBefore(li, this.#list.children[i] ?? null);
      });
    }
    this.#list.hidden = away;
    this.#note.hidden = !away && this.#items.size > 0;
    setText(
      this.#note,
      away
        ? 'You are away: the queue is hidden until you are available.'
        : 'No contact is waiting.',
    );
  }

  #add(e: QueueEntryView): void {
    const button = h(
      'button',
      {
        type: 'button',
        class: 'lk-btn',
        'data-testid': 'claim',
        'aria-label': `Claim ${e.contactId}`,
      },
      'Claim',
    );
    const since = new Date(e.createdAt).toLocaleTimeString([], {
      hour: '2-digit',
      minute: '2-digit',
    });
    const li = h(
      'li',
      { class: 'lk-queue-item', 'data-testid': 'queue-item', 'data-contact-id': e.contactId },
      h(
        'span',
        { class: 'lk-queue-id' },
        e.contactId,
        h('span', { class: 'lk-sr' }, ', '),
        h('span', { class: 'lk-note' }, `waiting since ${since}`),
      ),
      button,
    );
    button.addEventListener('click', () => void this.#claim(e.contactId, button));
    this.#items.set(e.contactId, li);
    this.#list.append(li);
  }

  async #claim(contactId: string, button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    let res: Response;
    try {
      res = await this.#fetch(`/queue/${encodeURIComponent(contactId)}/claim`, {
        method: 'POST',
        body: '{}',
      });
    } catch {
      button.disabled = false;
      this.#opts.announce(`Could not claim ${contactId}: backend unreachable.`);
      return;
    }
    if (res.ok) {
      this.#items.get(contactId)?.remove();
      this.#items.delete(contactId);
      this.#opts.announce(`You claimed ${contactId}.`);
      this.#opts.onClaimed(contactId);
    } else {
      button.disabled = false;
      this.#opts.announce(`Could not claim ${contactId}: ${await errorMessage(res)}.`);
    }
    await this.refresh();
  }
}

/**
 * The pane's queue actions for a claimed contact: back to the queue (`release`) and transfer to
 * another agent (`transfer`, with the agent's id). `onGone` runs once the contact left this agent.
 */
export function queueActions(
  opts: Pick<QueuePanelOptions, 'api' | 'headers' | 'announce'>,
  contactId: string,
  onGone: () => void,
): HTMLElement {
  const inputId = uid('lk-transfer');
  const to = h('input', {
    id: inputId,
    'data-testid': 'transfer-to',
    placeholder: 'agent id',
    pattern: '[A-Za-z0-9_-]{1,64}',
    maxlength: 64,
  });
  const release = h(
    'button',
    { type: 'button', class: 'lk-btn lk-btn-quiet', 'data-testid': 'release' },
    'Back to queue',
  );
  const transfer = h(
    'button',
    { type: 'button', class: 'lk-btn lk-btn-quiet', 'data-testid': 'transfer' },
    'Transfer',
  );
  const post = async (action: string, body: unknown, done: string): Promise<void> => {
    const res = await fetch(`${opts.api}/queue/${encodeURIComponent(contactId)}/${action}`, {
      method: 'POST',
      headers: { ...opts.headers, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    }).catch(() => null);
    if (res?.ok) {
      opts.announce(done);
      onGone();
    } else
      opts.announce(
        `Could not ${action} ${contactId}: ${res ? await errorMessage(res) : 'backend unreachable'}.`,
      );
  };
  release.addEventListener('click', () => {
    void post('release', {}, `${contactId} is back in the queue.`);
  });
  transfer.addEventListener('click', () => {
    const id = to.value.trim();
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) {
      opts.announce('Name the agent to transfer to.');
      to.focus();
      return;
    }
    void post('transfer', { toAgentId: id }, `${contactId} transferred to ${id}.`);
  });
  return h(
    'div',
    { class: 'lk-transfer' },
    release,
    h('label', { for: inputId, class: 'lk-sr' }, 'Transfer to agent'),
    to,
    transfer,
  );
}
