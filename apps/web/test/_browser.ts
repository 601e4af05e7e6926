/**
 * Shared pieces of the Chromium tests: Debian's /usr/bin/chromium (never a browser download),
 * a visitor relay socket that can be unplugged, and page helpers. Chromium's `setOffline` does
 * not close open WebSockets, so "offline" is simulated by routing the relay socket.
 */
import { existsSync } from 'node:fs';
import type { BrowserContext, Page, WebSocketRoute } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
export const haveChromium = existsSync(CHROMIUM);
/** Under CI=true a missing Chromium fails the suite instead of skipping it. */
export const mustRun = process.env.CI === 'true';

/** A context's relay sockets, cut and refused while `online` is false. */
export interface RelayPlug {
  online: boolean;
  /** Close code for refused sockets (4401 is AUTH_INVALID's: the client gives up). */
  refuseCode: number;
  /** Sockets refused so far (connection attempts made while unplugged). */
  refused: number;
  /** Unplugs: closes open sockets and refuses new ones until `online` is set again. */
  cut(): Promise<void>;
}

/** Routes every WebSocket of `ctx` through a plug that can be pulled. */
export async function plugRelay(ctx: BrowserContext): Promise<RelayPlug> {
  const sockets = new Set<WebSocketRoute>();
  const plug: RelayPlug = {
    online: true,
    refuseCode: 1006,
    refused: 0,
    async cut() {
      plug.online = false;
      for (const ws of sockets) await ws.close({ code: 1006 });
    },
  };
  await ctx.routeWebSocket(/.*/, (ws) => {
    if (!plug.online) {
      plug.refused++;
      void ws.close({ code: plug.refuseCode });
      return;
    }
    const server = ws.connectToServer();
    sockets.add(ws);
    ws.onClose(() => {
      sockets.delete(ws);
      void server.close();
    });
    server.onClose(() => void ws.close());
  });
  return plug;
}

export const messages = (p: Page) => p.locator('[data-testid=message]');
export const delivered = (p: Page) => p.locator('[data-testid=message][data-state=delivered]');
export const sending = (p: Page) => p.locator('[data-testid=message][data-state=sending]');

export async function texts(p: Page): Promise<string[]> {
  return p.locator('[data-testid=message] .lk-text').allTextContents();
}

export async function seqs(p: Page): Promise<(string | undefined)[]> {
  return messages(p).evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.seq));
}

export async function connected(p: Page): Promise<void> {
  await p
    .locator('[data-testid=connection-status][data-status=connected]:visible')
    .first()
    .waitFor({ timeout: 30_000 });
}

/** Types `text` into the composer and presses Enter. */
export async function type(p: Page, text: string): Promise<void> {
  const box = p.getByTestId('composer');
  await box.fill(text);
  await box.press('Enter');
}

/** The widget's IndexedDB outbox (apps/web/src/widget/main.ts). */
export const OUTBOX_DB = 'latchkey-widget-outbox';

export interface OutboxRecord {
  contactId: string;
  senderId: string;
  envelope: { msgId: string; contactId: string; senderId: string; ciphertext: string };
}

/** Every record of the widget's outbox, read in the page, as stored (never creating it). */
export function outboxRecords(p: Page): Promise<OutboxRecord[]> {
  return p.evaluate(async (name) => {
    let missing = false;
    const db = await new Promise<IDBDatabase | null>((resolve, reject) => {
      const req = indexedDB.open(name);
      // Not there yet: abort, so that the widget still creates it with its object store.
      req.onupgradeneeded = () => {
        missing = true;
        req.transaction?.abort();
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => (missing ? resolve(null) : reject(new Error(String(req.error))));
    });
    if (!db) return [];
    try {
      if (!db.objectStoreNames.contains('outbox')) return [];
      return await new Promise<OutboxRecord[]>((resolve, reject) => {
        const req = db.transaction('outbox', 'readonly').objectStore('outbox').getAll();
        req.onsuccess = () => resolve(req.result as OutboxRecord[]);
        req.onerror = () => reject(new Error(String(req.error)));
      });
    } finally {
      db.close();
    }
  }, OUTBOX_DB);
}
