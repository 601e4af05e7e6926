/**
 * The widget's outbox across a page reload, in Debian's Chromium (docs/guarantees.md "Client
 * outbox", docs/web.md "Offline and reload"): messages typed while the relay is unreachable are
 * kept as sealed envelopes in IndexedDB (never their text), still show as sending after a reload
 * made while still cut off, and once the relay is back go out exactly once, in order: on the
 * agent's screen and in the relay's SQLite store.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ARGS,
  CHROMIUM,
  connected,
  delivered,
  haveChromium,
  mustRun,
  outboxRecords,
  plugRelay,
  sending,
  seqs,
  texts,
  type,
  type RelayPlug,
} from './_browser.ts';
import { startWebStack, type WebStack } from './_stack.ts';

if (!haveChromium && mustRun) {
  describe('outbox reload test under CI', () => {
    it('needs Debian chromium', () => {
      expect.fail(`${CHROMIUM} is missing and CI=true: browser tests must not skip`);
    });
  });
}

describe.runIf(haveChromium)('widget outbox across a reload in Chromium', () => {
  let stack: WebStack;
  let browser: Browser;
  let visitorCtx: BrowserContext;
  let visitor: Page;
  let agent: Page;
  let plug: RelayPlug;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    stack = await startWebStack();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
    visitorCtx = await browser.newContext({ viewport: { width: 360, height: 740 } });
    plug = await plugRelay(visitorCtx);
    visitor = await visitorCtx.newPage();
    agent = await (await browser.newContext({ viewport: { width: 1100, height: 720 } })).newPage();
    for (const [name, p] of [
      ['visitor', visitor],
      ['agent', agent],
    ] as const) {
      p.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
    }
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await stack?.close();
  });

  it('messages typed while cut off survive a reload as sending and are delivered once, in order', async () => {
    const contact = new URL(stack.web.visitorUrl).searchParams.get('contact')!;
    const agentTexts = () =>
      agent.locator('.lk-pane:not([hidden]) [data-testid=message] .lk-text').allTextContents();
    const agentSeqs = () =>
      agent
        .locator('.lk-pane:not([hidden]) [data-testid=message]')
        .evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.seq));
    await visitor.goto(stack.web.visitorUrl);
    await connected(visitor);
    await agent.goto(stack.web.agentUrl);
    await connected(agent);
    await type(visitor, 'before the outage');
    await expect.poll(() => delivered(visitor).count(), { timeout: 30_000 }).toBe(1);
    await expect.poll(agentTexts, { timeout: 30_000 }).toEqual(['before the outage']);

    // The relay becomes unreachable; two messages are typed.
    await plug.cut();
    await visitor
      .locator('[data-testid=connection-status]:not([data-status=connected])')
      .waitFor({ timeout: 30_000 });
    await type(visitor, 'first while cut off');
    await type(visitor, 'second while cut off');
    expect(await sending(visitor).count()).toBe(2);
    // Both are sealed and recorded (what a reload keeps), as ciphertext only.
    await expect
      .poll(async () => (await outboxRecords(visitor)).length, { timeout: 30_000 })
      .toBe(2);
    const before = await outboxRecords(visitor);
    const stored = JSON.stringify(before);
    expect(stored).not.toContain('first while cut off');
    expect(stored).not.toContain('second while cut off');
    expect(stored).not.toContain('cut off');
    expect(
      before.every(
        (r) =>
          r.contactId === contact &&
          r.envelope.contactId === contact &&
          r.envelope.ciphertext.length > 0,
      ),
    ).toBe(true);
    const msgIds = before.map((r) => r.envelope.msgId);

    // Reload while still cut off: the restored messages show as sending, once each.
    await visitor.reload();
    await expect
      .poll(() => texts(visitor), { timeout: 30_000 })
      .toEqual(['first while cut off', 'second while cut off']);
    expect(await sending(visitor).count()).toBe(2);
    expect(await seqs(visitor)).toEqual([undefined, undefined]);
    expect(await visitor.getByTestId('connection-status').getAttribute('data-status')).not.toBe(
      'connected',
    );
    // Further connection attempts restore them again; the list does not grow.
    const refused = plug.refused;
    await expect.poll(() => plug.refused, { timeout: 60_000 }).toBeGreaterThanOrEqual(refused + 2);
    expect(await texts(visitor)).toEqual(['first while cut off', 'second while cut off']);
    expect(JSON.stringify(await outboxRecords(visitor))).not.toContain('cut off');
    expect(await agentTexts()).toEqual(['before the outage']);

    // Back online: each goes out once, in order, after the history.
    plug.online = true;
    await connected(visitor);
    await expect.poll(() => delivered(visitor).count(), { timeout: 30_000 }).toBe(3);
    const want = ['before the outage', 'first while cut off', 'second while cut off'];
    expect(await texts(visitor)).toEqual(want);
    expect(await seqs(visitor)).toEqual(['1', '2', '3']);
    await expect.poll(agentTexts, { timeout: 30_000 }).toEqual(want);
    expect(await agentSeqs()).toEqual(['1', '2', '3']);
    // Acknowledged records are forgotten.
    await expect
      .poll(async () => (await outboxRecords(visitor)).length, { timeout: 30_000 })
      .toBe(0);

    // The relay stored each once, in order, under the msgIds sealed before the reload.
    const db = new Database(join(stack.dir, 'relay', 'messages.db'), { readonly: true });
    try {
      const rows = db
        .prepare('SELECT seq, msg_id AS msgId FROM messages WHERE contact_id = ? ORDER BY seq')
        .all(contact) as {
        seq: number;
        msgId: string;
      }[];
      expect(rows.map((r) => r.seq)).toEqual([1, 2, 3]);
      expect(rows.slice(1).map((r) => r.msgId)).toEqual(msgIds);
    } finally {
      db.close();
    }

    // A new message after all this comes after them; nothing was shown twice.
    await type(visitor, 'after the reload');
    await expect.poll(agentTexts, { timeout: 30_000 }).toEqual([...want, 'after the reload']);
    await expect.poll(() => delivered(visitor).count(), { timeout: 30_000 }).toBe(4);
    expect(await texts(visitor)).toEqual([...want, 'after the reload']);
    expect(pageErrors).toEqual([]);
  });
});
