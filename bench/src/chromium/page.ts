/**
 * The benchmark page (browser code; bundled with Vite by bundle.ts, global
 * `LatchkeyHistoryBench`): opens a contact's stored history the way the web app does, with the
 * real code: apps/web's `Conversation` (its message list, styles and all) on a real
 * `LatchkeyClient` that joins the relay stand-in, receives the replayed envelopes, checks each
 * certificate, signature, AES-GCM tag, body and the transcript, and emits them to be drawn.
 *
 * Timed in the page with performance.now(), from the moment the client asks for the replay (the
 * stored history is then on its way) to all rows in the DOM and laid out (a forced layout), and
 * to the next animation frame. Modes: `full` (the target), `open` (the client alone), `render`
 * (the Conversation fed the already opened messages), `history` (`client.history()`, pages of
 * 500 through readHistory).
 */
import { LatchkeyClient, type ChatMessage, type ClientOptions } from '@latchkey/client';
import { Conversation, type ConversationClient } from '../../../apps/web/src/ui/conversation.ts';
import { h } from '../../../apps/web/src/ui/dom.ts';
import { adoptStyles } from '../../../apps/web/src/ui/styles.ts';
import type { HistoryPayload } from './history-fixture.ts';
import { keyService, relaySocket, task } from './stand-ins.ts';

export type Mode = 'full' | 'open' | 'render' | 'history';

export interface RunTimes {
  mode: Mode;
  /** Replay asked for → every row in the DOM and laid out (or, `open`/`history`, all opened). */
  ms: number;
  /** Replay asked for → the next animation frame after that. */
  frameMs: number;
  /** Messages shown (or opened) as delivered text. */
  shown: number;
  /** Messages that came out as failed or suspect (must be 0). */
  failed: number;
}

const RELAY_URL = 'wss://relay.bench.invalid/v1/ws';
const KEYS_URL = 'https://keys.bench.invalid/';

function clientOptions(p: HistoryPayload, onJoin: () => void): ClientOptions {
  return {
    relayUrl: RELAY_URL,
    keysUrl: KEYS_URL,
    token: p.token,
    serviceKey: p.servicePublicKey,
    WebSocket: relaySocket(p, onJoin),
    fetch: keyService(p),
    keyDelivery: 'plain',
    reconnect: false,
  };
}

const nextFrame = (): Promise<void> =>
  new Promise((resolve) => requestAnimationFrame(() => task(resolve)));

/** Mounts a widget-sized conversation as the visitor widget does (styles, `lk-root`). */
function mountConversation(
  count: number,
  createClient: (o: ClientOptions) => ConversationClient,
  p: HistoryPayload,
): { conversation: Conversation; done: Promise<number> } {
  adoptStyles();
  let shown = 0;
  let resolve: (t: number) => void = () => undefined;
  const done = new Promise<number>((r) => (resolve = r));
  const conversation = new Conversation({
    title: 'Bench history',
    getSession: () =>
      Promise.resolve({
        contactId: p.contactId,
        participantId: p.reader.participantId,
        role: p.reader.role,
        token: p.token,
        expiresAt: Date.now() + 3_600_000,
        relayUrl: RELAY_URL,
        keysUrl: KEYS_URL,
        serviceKey: p.servicePublicKey,
      }),
    onActivity: () => {
      if (++shown === count) resolve(performance.now());
    },
    createClient,
  });
  const root = h('div', { class: 'lk-root lk-widget' }, conversation.root);
  document.body.replaceChildren(root);
  conversation.start();
  return { conversation, done };
}

async function laidOut(t0: number, mode: Mode): Promise<RunTimes> {
  const list = document.querySelector('.lk-messages');
  // Forces style and layout of everything appended (a no-op if it is already clean).
  list?.lastElementChild?.getBoundingClientRect();
  const ms = performance.now() - t0;
  await nextFrame();
  const frameMs = performance.now() - t0;
  const shown = document.querySelectorAll('[data-testid=message][data-state=delivered]').length;
  const failed = document.querySelectorAll(
    '[data-state=undecryptable],[data-state=suspect]',
  ).length;
  return { mode, ms, frameMs, shown, failed };
}

async function full(p: HistoryPayload): Promise<RunTimes> {
  let t0 = 0;
  const { conversation, done } = mountConversation(
    p.envelopes.length,
    (o) => new LatchkeyClient({ ...clientOptions(p, () => (t0 = performance.now())), ...o }),
    p,
  );
  await done;
  const r = await laidOut(t0, 'full');
  conversation.close();
  return r;
}

async function render(p: HistoryPayload): Promise<RunTimes> {
  let t0 = 0;
  const listeners = new Map<string, ((v: unknown) => void)[]>();
  const emit = (event: string, v: unknown): void => {
    for (const l of listeners.get(event) ?? []) l(v);
  };
  const fake = {
    on(event: string, l: (v: unknown) => void) {
      listeners.set(event, [...(listeners.get(event) ?? []), l]);
      return () => undefined;
    },
    connect() {
      // As the real client emits them: one message per task, in seq order.
      task(() => {
        t0 = performance.now();
        for (const m of p.opened) task(() => emit('message', m));
      });
      emit('state', 'connected');
      return Promise.resolve();
    },
    close: () => emit('state', 'closed'),
    send: () => Promise.reject(new Error('read only')),
    fingerprint: () => '0000 0000 0000 0000 0000 0000 0000 0000',
    epoch: 0,
    state: 'connected',
    participantId: p.reader.participantId,
    role: p.reader.role,
    contactId: p.contactId,
  } as unknown as ConversationClient;
  const { conversation, done } = mountConversation(p.opened.length, () => fake, p);
  await done;
  const r = await laidOut(t0, 'render');
  conversation.close();
  return r;
}

async function open(p: HistoryPayload): Promise<RunTimes> {
  let t0 = 0;
  let shown = 0;
  let failed = 0;
  const client = new LatchkeyClient(clientOptions(p, () => (t0 = performance.now())));
  const done = new Promise<number>((resolve) => {
    const count = (): void => {
      if (shown + failed === p.envelopes.length) resolve(performance.now());
    };
    client.on('message', (_m: ChatMessage) => {
      shown++;
      count();
    });
    client.on('failed', () => {
      failed++;
      count();
    });
  });
  await client.connect();
  const t1 = await done;
  client.close();
  return { mode: 'open', ms: t1 - t0, frameMs: t1 - t0, shown, failed };
}

async function history(p: HistoryPayload): Promise<RunTimes> {
  const client = new LatchkeyClient({ ...clientOptions(p, () => undefined), live: false });
  await client.connect();
  const t0 = performance.now();
  const entries = await client.history(0);
  const ms = performance.now() - t0;
  client.close();
  const shown = entries.filter((e) => e.ok).length;
  return { mode: 'history', ms, frameMs: ms, shown, failed: entries.length - shown };
}

/** Runs one mode once (the harness gives each run a fresh page). */
export function run(mode: Mode, p: HistoryPayload): Promise<RunTimes> {
  switch (mode) {
    case 'full':
      return full(p);
    case 'render':
      return render(p);
    case 'open':
      return open(p);
    case 'history':
      return history(p);
  }
}
