/**
 * The visitor widget: `widget.js`, built as one IIFE script (global `LatchkeyWidget`) that a
 * website embeds with a script tag and a container element (docs/web.md "Embedding"):
 *
 *   <div id="latchkey-chat"></div>
 *   <script src="https://chat.example.com/widget.js" data-session-url="/latchkey/session" async></script>
 *
 * The session URL is the embedding site's own backend: it creates a contact for the visitor and
 * mints the participant token server-side. The session (token and contact, never message text)
 * lives in sessionStorage, so a reload rejoins the same conversation and replays its history.
 * Messages still sending wait as sealed envelopes (never text) in IndexedDB, so a reload shows
 * them as sending again and sends them once, in order (docs/web.md "Offline and reload").
 */
import { IndexedDbOutbox } from '@latchkey/client';
import { Conversation } from '../ui/conversation.ts';
import { h } from '../ui/dom.ts';
import { demoHeaders, requestSession, parseSession, type SessionInfo } from '../ui/session.ts';
import { adoptStyles } from '../ui/styles.ts';

export interface WidgetOptions {
  /** The embedding site's endpoint that answers POST with a session (see docs/web.md). */
  sessionUrl: string;
  /** Ask the backend for this contact instead of a new one (the backend decides). */
  contactId?: string;
  title?: string;
  /** Extra headers of every session request (the demo page sends its demo key this way). */
  sessionHeaders?: Record<string, string>;
}

export interface MountedWidget {
  readonly conversation: Conversation;
  close(): void;
}

const RENEW_MARGIN_MS = 60_000;
/** The IndexedDB database of the widget's outbox. */
const OUTBOX_DB = 'latchkey-widget-outbox';

function storageKey(sessionUrl: string): string {
  return `latchkey:widget:${new URL(sessionUrl, location.href).href}`;
}

function loadStored(key: string): SessionInfo | null {
  try {
    const raw = sessionStorage.getItem(key);
    return raw ? parseSession(JSON.parse(raw)) : null;
  } catch {
    return null;
  }
}

/** Mounts the chat into `container` and starts connecting. */
export function mount(container: HTMLElement, opts: WidgetOptions): MountedWidget {
  adoptStyles();
  const key = storageKey(opts.sessionUrl);
  const getSession = async (renew: boolean): Promise<SessionInfo> => {
    const stored = loadStored(key);
    const wanted = opts.contactId;
    const usable = stored !== null && (wanted === undefined || stored.contactId === wanted);
    if (usable && !renew && stored.expiresAt - RENEW_MARGIN_MS > Date.now()) return stored;
    const contactId = usable ? stored.contactId : wanted;
    const session = await requestSession(
      opts.sessionUrl,
      contactId === undefined ? {} : { contactId },
      opts.sessionHeaders,
    );
    try {
      sessionStorage.setItem(key, JSON.stringify(session));
    } catch {
      // Storage full or disabled: the chat works, a reload starts over.
    }
    return session;
  };
  // One database per site; records carry their contact and participant and are loaded by them.
  const outbox = new IndexedDbOutbox(OUTBOX_DB);
  const conversation = new Conversation({
    title: opts.title ?? 'Chat with us',
    getSession,
    outbox,
  });
  const root = h('div', { class: 'lk-root lk-widget' }, conversation.root);
  container.replaceChildren(root);
  conversation.start();
  return {
    conversation,
    close() {
      conversation.close();
    },
  };
}

/**
 * Auto-mount from the script tag's data attributes (`data-session-url`, `data-container`;
 * `data-demo` on the demo page only: send the demo backend's key from the URL fragment).
 */
function autoMount(script: HTMLScriptElement): void {
  const sessionUrl = script.dataset.sessionUrl;
  if (!sessionUrl) return;
  // Read now, before anything else touches the address bar.
  const sessionHeaders = script.dataset.demo === undefined ? undefined : demoHeaders();
  const run = (): void => {
    const id = script.dataset.container ?? 'latchkey-chat';
    let container = document.getElementById(id);
    if (!container) {
      container = h('div', { id });
      script.after(container);
    }
    const opts: WidgetOptions = { sessionUrl };
    if (script.dataset.contact) opts.contactId = script.dataset.contact;
    if (script.dataset.title) opts.title = script.dataset.title;
    if (sessionHeaders) opts.sessionHeaders = sessionHeaders;
    mount(container, opts);
  };
  if (document.readyState === 'loading')
    document.addEventListener('DOMContentLoaded', run, { once: true });
  else run();
}

const current = document.currentScript;
if (current instanceof HTMLScriptElement) autoMount(current);
