/**
 * End to end in Debian's Chromium (/usr/bin/chromium, driven by playwright-core; never a browser
 * download): a visitor on the demo page and an agent on the console, in two browser contexts,
 * against a real relay and key service. Without Chromium the suite skips with a reason, except
 * under CI=true, where it fails.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WEB_ROOT } from '../src/build.ts';
import {
  ARGS,
  CHROMIUM,
  connected,
  delivered,
  haveChromium,
  messages,
  mustRun,
  outboxRecords,
  plugRelay,
  texts,
  type,
  type RelayPlug,
} from './_browser.ts';
import { startWebStack, type WebStack } from './_stack.ts';

const OUT = join(WEB_ROOT, 'test-output');

if (!haveChromium && !mustRun) {
  console.log(
    `skipping browser tests: ${CHROMIUM} is missing (apt-get install chromium; under CI=true they fail instead)`,
  );
}

if (!haveChromium && mustRun) {
  describe('browser tests under CI', () => {
    it('needs Debian chromium', () => {
      expect.fail(`${CHROMIUM} is missing and CI=true: browser tests must not skip`);
    });
  });
}

describe.runIf(haveChromium)('visitor widget and agent console in Chromium', () => {
  let stack: WebStack;
  let browser: Browser;
  let visitorCtx: BrowserContext;
  let agentCtx: BrowserContext;
  let visitor: Page;
  let agent: Page;
  /** The visitor's relay sockets, which can be cut and refused (offline and failure tests). */
  let plug: RelayPlug;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    await mkdir(OUT, { recursive: true });
    stack = await startWebStack();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
    visitorCtx = await browser.newContext({ viewport: { width: 360, height: 740 } });
    agentCtx = await browser.newContext({ viewport: { width: 1100, height: 720 } });
    // The visitor's relay socket goes through a route that can be unplugged (offline test).
    plug = await plugRelay(visitorCtx);
    visitor = await visitorCtx.newPage();
    agent = await agentCtx.newPage();
    for (const [name, p] of [
      ['visitor', visitor],
      ['agent', agent],
    ] as const) {
      p.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
    }
  }, 120_000);

  afterAll(async () => {
    if (visitor && agent) {
      await visitor
        .locator('.lk-widget')
        .screenshot({ path: join(OUT, 'visitor.png') })
        .catch(() => undefined);
      await agent.screenshot({ path: join(OUT, 'agent.png') }).catch(() => undefined);
    }
    await browser?.close();
    await stack?.close();
  });

  it('visitor and agent chat both ways and see the same key fingerprint', async () => {
    await visitor.goto(stack.web.visitorUrl);
    await connected(visitor);
    await agent.goto(stack.web.agentUrl);
    await connected(agent);
    const contact = new URL(stack.web.visitorUrl).searchParams.get('contact')!;
    await expect
      .poll(() => agent.locator(`[data-testid=contact-item][data-contact-id="${contact}"]`).count())
      .toBe(1);
    expect(await agent.locator('[data-testid=contact-list]').count()).toBe(1);

    await type(visitor, 'Hello, I have a question about my order <b>#42</b>');
    await expect
      .poll(() => texts(agent))
      .toEqual(['Hello, I have a question about my order <b>#42</b>']);
    // Text, never markup.
    expect(await agent.locator('.lk-text b').count()).toBe(0);
    await type(agent, 'Hi! Happy to help.');
    await expect
      .poll(() => texts(visitor))
      .toEqual(['Hello, I have a question about my order <b>#42</b>', 'Hi! Happy to help.']);
    await expect.poll(() => delivered(visitor).count()).toBe(2);
    expect(
      await messages(visitor).evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.seq)),
    ).toEqual(['1', '2']);
    expect(
      await messages(agent).evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.seq)),
    ).toEqual(['1', '2']);

    const fv = await visitor.getByTestId('e2e-fingerprint').getAttribute('data-fingerprint');
    const fa = await agent
      .locator('.lk-pane:not([hidden]) [data-testid=e2e-fingerprint]')
      .getAttribute('data-fingerprint');
    expect(fv).toMatch(/^[0-9A-F]{4}( [0-9A-F]{4}){7}$|^[0-9A-F-]{20,}$/);
    expect(fa).toBe(fv);
    expect(await visitor.getByTestId('e2e-fingerprint').textContent()).toContain(
      'End-to-end encrypted',
    );
    // Participants with roles.
    expect(await agent.locator('.lk-pane:not([hidden]) .lk-people li').allTextContents()).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/· visitor$/),
        expect.stringMatching(/^agent-demo · agent$/),
      ]),
    );
  });

  it('a reload restores the visitor session and its history', async () => {
    const before = await visitor.getByTestId('e2e-fingerprint').getAttribute('data-fingerprint');
    await visitor.reload();
    await connected(visitor);
    await expect
      .poll(() => texts(visitor))
      .toEqual(['Hello, I have a question about my order <b>#42</b>', 'Hi! Happy to help.']);
    expect(await visitor.getByTestId('e2e-fingerprint').getAttribute('data-fingerprint')).toBe(
      before,
    );
  });

  it('a visitor who goes offline and types two messages gets each delivered once, in order', async () => {
    await visitorCtx.setOffline(true);
    await plug.cut();
    await visitor.locator('[data-testid=connection-status][data-status=offline]').waitFor();
    await type(visitor, 'first while offline');
    await type(visitor, 'second while offline');
    expect(await visitor.locator('[data-testid=message][data-state=sending]').count()).toBe(2);
    await visitor.waitForTimeout(1000);
    // Nothing got through.
    expect(await texts(agent)).toHaveLength(2);
    await visitor.screenshot({ path: join(OUT, 'visitor-offline.png') });

    plug.online = true;
    await visitorCtx.setOffline(false);
    await connected(visitor);
    await expect.poll(() => delivered(visitor).count(), { timeout: 15_000 }).toBe(4);
    const want = [
      'Hello, I have a question about my order <b>#42</b>',
      'Hi! Happy to help.',
      'first while offline',
      'second while offline',
    ];
    await expect.poll(() => texts(agent), { timeout: 15_000 }).toEqual(want);
    expect(await texts(visitor)).toEqual(want);
    expect(
      await messages(agent).evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.seq)),
    ).toEqual(['1', '2', '3', '4']);
    // Exactly once in the relay's store too.
    const db = new Database(join(stack.dir, 'relay', 'messages.db'), { readonly: true });
    try {
      const contact = new URL(stack.web.visitorUrl).searchParams.get('contact');
      const row = db
        .prepare('SELECT COUNT(*) AS n FROM messages WHERE contact_id = ?')
        .get(contact) as { n: number };
      expect(row.n).toBe(4);
    } finally {
      db.close();
    }
  });

  it('the agent console lists contacts newest first with unread counts', async () => {
    // A second visitor opens a new contact: it is listed first and its message counts as unread.
    const other = await (
      await browser.newContext({ viewport: { width: 360, height: 740 } })
    ).newPage();
    // A new visitor on the demo page (the demo key from the printed URL's fragment).
    await other.goto(`${stack.web.url}/demo${new URL(stack.web.visitorUrl).hash}`);
    await connected(other);
    await type(other, 'Another customer here');
    await expect
      .poll(() => agent.locator('[data-testid=contact-item]').count(), { timeout: 10_000 })
      .toBe(2);
    const first = agent.locator('[data-testid=contact-item]').first();
    await expect.poll(() => first.getAttribute('data-unread'), { timeout: 10_000 }).toBe('1');
    const newId = await first.getAttribute('data-contact-id');
    expect(newId).not.toBe(new URL(stack.web.visitorUrl).searchParams.get('contact'));
    // Keyboard: focus the item and press Enter to open it; the unread count clears.
    await first.focus();
    await agent.keyboard.press('Enter');
    await expect.poll(() => first.getAttribute('data-unread')).toBe('0');
    await expect
      .poll(() => agent.locator('.lk-pane:not([hidden]) .lk-text').allTextContents())
      .toEqual(['Another customer here']);
    await agent.keyboard.type('Hello there!');
    await agent.keyboard.press('Enter');
    await expect.poll(() => texts(other)).toEqual(['Another customer here', 'Hello there!']);
    await other.context().close();
    // Back to the first contact for the screenshots.
    await agent.locator('[data-testid=contact-item]').nth(1).click();
  });

  it('a tampered envelope shows as "could not decrypt", never as garbage', async () => {
    await type(visitor, 'this one gets tampered with');
    await expect.poll(() => delivered(visitor).count()).toBe(5);
    const contact = new URL(stack.web.visitorUrl).searchParams.get('contact');
    const db = new Database(join(stack.dir, 'relay', 'messages.db'));
    try {
      const row = db
        .prepare('SELECT envelope FROM messages WHERE contact_id = ? AND seq = 5')
        .get(contact) as { envelope: string };
      const env = JSON.parse(row.envelope) as { ciphertext: string };
      const c = env.ciphertext;
      env.ciphertext = (c[0] === 'A' ? 'B' : 'A') + c.slice(1);
      db.prepare('UPDATE messages SET envelope = ? WHERE contact_id = ? AND seq = 5').run(
        JSON.stringify(env),
        contact,
      );
    } finally {
      db.close();
    }
    await agent.reload();
    await connected(agent);
    const bad = agent.locator('.lk-pane:not([hidden]) [data-testid=message][data-seq="5"]');
    await bad.waitFor({ timeout: 15_000 });
    expect(await bad.getAttribute('data-state')).toBe('undecryptable');
    expect((await bad.textContent())?.toLowerCase()).toContain('could not decrypt');
    expect(await agent.locator('body').textContent()).not.toContain('this one gets tampered with');
    // The untouched messages still open.
    await expect
      .poll(() =>
        agent.locator('.lk-pane:not([hidden]) [data-testid=message][data-state=delivered]').count(),
      )
      .toBe(4);
  });

  it('a send that fails shows "failed" with Retry, and Retry delivers it once', async () => {
    const agentTexts = () =>
      agent.locator('.lk-pane:not([hidden]) [data-testid=message] .lk-text').allTextContents();
    plug.refuseCode = 4401;
    await plug.cut();
    await visitor.locator('[data-testid=connection-status]:not([data-status=connected])').waitFor();
    await type(visitor, 'refused, then retried');
    const item = visitor.locator('[data-testid=message]').last();
    await expect.poll(() => item.getAttribute('data-state'), { timeout: 15_000 }).toBe('failed');
    expect(await item.textContent()).toContain('Not sent');
    // Failed is final: its sealed copy leaves the IndexedDB outbox, so no later session sends it too.
    await expect
      .poll(async () => (await outboxRecords(visitor)).length, { timeout: 15_000 })
      .toBe(0);
    plug.online = true;
    plug.refuseCode = 1006;
    await connected(visitor);
    await item.getByTestId('retry').click();
    const last = visitor.locator('[data-testid=message]').last();
    await expect.poll(() => last.getAttribute('data-state'), { timeout: 15_000 }).toBe('delivered');
    expect(await last.getAttribute('data-seq')).toBe('6');
    await expect.poll(agentTexts).toContain('refused, then retried');
    expect((await agentTexts()).filter((t) => t === 'refused, then retried')).toHaveLength(1);
    expect(await visitor.locator('[data-testid=message][data-state=failed]').count()).toBe(0);
  });

  it('works at 360 px wide without horizontal scrolling, with labelled controls', async () => {
    const overflow = await visitor.evaluate(
      () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
    );
    expect(overflow).toBeLessThanOrEqual(0);
    expect(await visitor.getByLabel('Message', { exact: true }).count()).toBe(1);
    expect(await visitor.getByRole('button', { name: 'Send' }).count()).toBe(1);
    expect(pageErrors).toEqual([]);
  });
});
