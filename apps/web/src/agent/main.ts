/**
 * The agent console (`agent.js` on agent.html): the open contacts, newest activity first with
 * unread counts, one pane per conversation with its participants and roles, send and receive,
 * and a "Close contact" action that later issues extend. Contacts and agent tokens come from
 * the backend (`data-api`, the demo backend in development; docs/web.md).
 *
 * With `queue` (the page URL names its agent: `?agent=<id>`), the console shows the queue
 * (ui/queue.ts): the agent claims waiting contacts, sees only its own, and gives one back to the
 * queue or transfers it to another agent from its pane.
 */
import type { Role } from '@latchkey/protocol';
import { Conversation } from '../ui/conversation.ts';
import { h, setText } from '../ui/dom.ts';
import { QueuePanel, queueActions } from '../ui/queue.ts';
import { demoHeaders, requestSession } from '../ui/session.ts';
import { adoptStyles } from '../ui/styles.ts';

interface ContactSummary {
  contactId: string;
  createdAt: number;
  participants: { id: string; role: Role }[];
}

interface Entry {
  id: string;
  conversation: Conversation;
  item: HTMLLIElement;
  button: HTMLButtonElement;
  badge: HTMLElement;
  sub: HTMLElement;
  pane: HTMLElement;
  people: HTMLUListElement;
  activity: number;
  unread: number;
}

const POLL_MS = 2000;

/**
 * Mounts the console. `headers` go with every backend request (the demo console sends the demo
 * backend's key this way).
 */
export function mountConsole(
  container: HTMLElement,
  api: string,
  headers: Record<string, string> = {},
  opts: { queue?: boolean } = {},
): { close(): void } {
  adoptStyles();
  const entries = new Map<string, Entry>();
  let selected: string | null = new URLSearchParams(location.search).get('contact');
  const list = h('ul', {
    class: 'lk-contacts',
    'data-testid': 'contact-list',
    'aria-label': 'Open contacts',
  });
  const emptyNote = h(
    'p',
    { class: 'lk-note' },
    'No open contacts yet. Open the visitor demo to start one.',
  );
  const announcer = h('p', { class: 'lk-sr', role: 'status', 'aria-live': 'polite' });
  const main = h('section', { class: 'lk-main', 'aria-label': 'Conversation' }, emptyNote);
  const announce = (text: string): void => setText(announcer, text);
  const queue =
    opts.queue === true
      ? new QueuePanel({
          api,
          headers,
          announce,
          onClaimed: (id) => void load().then(() => open(id)),
        })
      : null;
  if (queue) setText(emptyNote, 'No contacts yet. Claim one from the queue.');
  const root = h(
    'div',
    { class: 'lk-root lk-console' },
    h(
      'nav',
      { class: 'lk-sidebar', 'aria-label': 'Contacts' },
      queue?.root,
      h('h1', { class: 'lk-title' }, queue ? 'My contacts' : 'Open contacts'),
      list,
    ),
    main,
    announcer,
  );
  container.replaceChildren(root);

  function renderPeople(e: Entry): void {
    const items = [...e.conversation.participants].map(([id, role]) =>
      h('li', { 'data-role': role }, `${id} · ${role}`),
    );
    e.people.replaceChildren(...items);
  }

  function renderBadge(e: Entry): void {
    e.badge.hidden = e.unread === 0;
    setText(e.badge, String(e.unread));
    e.badge.setAttribute('aria-label', `${e.unread} unread`);
    e.button.dataset.unread = String(e.unread);
  }

  /** Newest activity first. */
  function sortList(): void {
    const sorted = [...entries.values()].sort(
      (a, b) => b.activity - a.activity || a.id.localeCompare(b.id),
    );
    const focused = document.activeElement;
    sorted.forEach((e, i) => {
      if (list.children[i] !== e.item) list.insertBefore(e.item, list.children[i] ?? null);
    });
    if (focused instanceof HTMLElement && focused !== document.activeElement) focused.focus();
  }

  function select(id: string): void {
    selected = id;
    for (const e of entries.values()) {
      const on = e.id === id;
      e.pane.hidden = !on;
      e.button.setAttribute('aria-current', String(on));
      if (on) {
        e.unread = 0;
        renderBadge(e);
      }
    }
    emptyNote.hidden = entries.size > 0;
    const url = new URL(location.href);
    url.searchParams.set('contact', id);
    history.replaceState(null, '', url);
  }

  /** Selects a contact's pane and moves focus to its composer. */
  function open(id: string): void {
    const e = entries.get(id);
    if (!e) return;
    select(id);
    e.conversation.focus();
  }

  async function closeContact(e: Entry): Promise<void> {
    const res = await fetch(`${api}/contacts/${encodeURIComponent(e.id)}/close`, {
      method: 'POST',
      headers,
    });
    if (!res.ok) {
      setText(announcer, `Could not close ${e.id}.`);
      return;
    }
    drop(e);
    setText(announcer, `Contact ${e.id} closed.`);
  }

  /** Takes a contact out of the console (closed, released or transferred). */
  function drop(e: Entry): void {
    e.conversation.close();
    e.item.remove();
    e.pane.remove();
    entries.delete(e.id);
    const next = [...entries.values()].sort((a, b) => b.activity - a.activity)[0];
    if (next) select(next.id);
    else {
      selected = null;
      emptyNote.hidden = false;
    }
  }

  function add(c: ContactSummary): void {
    const badge = h('span', { class: 'lk-badge', hidden: true });
    const sub = h('span', { class: 'lk-contact-sub' }, 'no messages yet');
    const button = h(
      'button',
      {
        type: 'button',
        class: 'lk-contact',
        'data-testid': 'contact-item',
        'data-contact-id': c.contactId,
        'aria-current': 'false',
      },
      h('span', { class: 'lk-contact-id' }, c.contactId, sub),
      badge,
    );
    const item = h('li', {}, button);
    const people = h('ul', { class: 'lk-people', 'aria-label': 'Participants' });
    const closeButton = h(
      'button',
      { type: 'button', class: 'lk-btn lk-btn-quiet', 'data-testid': 'close-contact' },
      'Close contact',
    );
    const conversation = new Conversation({
      title: `Contact ${c.contactId}`,
      getSession: () => requestSession(`${api}/agent-session`, { contactId: c.contactId }, headers),
      onActivity(a) {
        e.activity = Math.max(e.activity, a.sentAt ?? Date.now());
        setText(
          e.sub,
          `last message ${new Date(e.activity).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}`,
        );
        if (a.own) {
          // A reply means the agent has read what came before.
          e.unread = 0;
          renderBadge(e);
        } else if (selected !== e.id || document.hidden) {
          e.unread += 1;
          renderBadge(e);
        }
        sortList();
      },
      onParticipants() {
        renderPeople(e);
      },
    });
    const pane = h(
      'div',
      { class: 'lk-pane', hidden: true, 'data-contact-id': c.contactId },
      h(
        'div',
        { class: 'lk-pane-bar' },
        people,
        queue
          ? queueActions({ api, headers, announce }, c.contactId, () => {
              drop(e);
              void queue.refresh();
            })
          : null,
        closeButton,
      ),
      conversation.root,
    );
    const e: Entry = {
      id: c.contactId,
      conversation,
      item,
      button,
      badge,
      sub,
      pane,
      people,
      activity: c.createdAt,
      unread: 0,
    };
    for (const p of c.participants) conversation.participants.set(p.id, p.role);
    renderPeople(e);
    entries.set(c.contactId, e);
    button.addEventListener('click', () => {
      select(c.contactId);
      conversation.focus();
    });
    closeButton.addEventListener('click', () => void closeContact(e));
    main.append(pane);
    list.append(item);
    conversation.start();
  }

  /** Arrow keys move between contacts in the list. */
  list.addEventListener('keydown', (ev) => {
    if (ev.key !== 'ArrowDown' && ev.key !== 'ArrowUp') return;
    const buttons = Array.from(
      list.querySelectorAll<HTMLButtonElement>('[data-testid=contact-item]'),
    );
    const i = buttons.indexOf(document.activeElement as HTMLButtonElement);
    const next = buttons[ev.key === 'ArrowDown' ? i + 1 : i - 1];
    if (next) {
      ev.preventDefault();
      next.focus();
    }
  });

  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  async function refresh(): Promise<void> {
    await Promise.all([load(), queue?.refresh()]);
    if (!stopped) timer = setTimeout(() => void refresh(), POLL_MS);
  }

  /** Loads the contacts list once. */
  async function load(): Promise<void> {
    try {
      const res = await fetch(`${api}/contacts`, { headers });
      if (res.ok) {
        const body = (await res.json()) as { contacts: ContactSummary[] };
        for (const c of body.contacts) if (!entries.has(c.contactId)) add(c);
        if (queue) {
          // Released or transferred elsewhere: no longer this agent's.
          const ids = new Set(body.contacts.map((c) => c.contactId));
          for (const e of [...entries.values()]) if (!ids.has(e.id)) drop(e);
        }
        sortList();
        const first = [...entries.values()].sort((a, b) => b.activity - a.activity)[0];
        if (selected === null || !entries.has(selected)) {
          if (first) select(first.id);
        } else if (entries.get(selected)?.pane.hidden) select(selected);
        emptyNote.hidden = entries.size > 0;
      }
    } catch {
      // Backend unreachable: try again on the next tick.
    }
  }
  void refresh();
  return {
    close() {
      stopped = true;
      clearTimeout(timer);
      for (const e of entries.values()) e.conversation.close();
    },
  };
}

const current = document.currentScript;
if (current instanceof HTMLScriptElement) {
  const api = current.dataset.api ?? '/api/demo';
  // `data-demo`: the development demo backend, which wants its key from the URL fragment.
  const headers = current.dataset.demo === undefined ? {} : demoHeaders();
  // `?agent=<id>`: the console of that agent, with the queue (the demo backend takes the name).
  const agent = new URLSearchParams(location.search).get('agent');
  const named = agent !== null && /^[A-Za-z0-9_-]{1,64}$/.test(agent);
  if (named) headers['x-latchkey-demo-agent'] = agent;
  const run = (): void => {
    const el = document.getElementById(current.dataset.container ?? 'latchkey-console');
    if (el) mountConsole(el, api, headers, { queue: named });
  };
  if (document.readyState === 'loading')
    document.addEventListener('DOMContentLoaded', run, { once: true });
  else run();
}
