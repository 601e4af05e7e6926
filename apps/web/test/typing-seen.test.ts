/**
 * Typing and receipts in Debian's Chromium (docs/web.md "Typing and receipts"): a visitor on the
 * demo page and an agent on the console, in two browser contexts, against a real relay and key
 * service. Typing shows on the other side and clears (text emptied, message sent); our messages
 * carry `data-receipt` that goes from `sent` to `seen` once the other side's focused tab shows it.
 */
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ARGS, CHROMIUM, connected, haveChromium, texts, type } from './_browser.ts';
import { startWebStack, type WebStack } from './_stack.ts';

describe.runIf(haveChromium)('typing and seen in Chromium', () => {
  let stack: WebStack;
  let browser: Browser;
  let visitor: Page;
  let agent: Page;
  const pageErrors: string[] = [];
  const indicator = (p: Page) =>
    p
      .locator(
        '.lk-pane:not([hidden]) [data-testid=typing-indicator], .lk-widget [data-testid=typing-indicator]',
      )
      .first();

  beforeAll(async () => {
    stack = await startWebStack();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
    visitor = await (await browser.newContext({ viewport: { width: 360, height: 740 } })).newPage();
    agent = await (await browser.newContext({ viewport: { width: 1100, height: 720 } })).newPage();
    for (const [name, p] of [
      ['visitor', visitor],
      ['agent', agent],
    ] as const) {
      p.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
    }
    await visitor.goto(stack.web.visitorUrl);
    await connected(visitor);
    await agent.goto(stack.web.agentUrl);
    await connected(agent);
    const contact = new URL(stack.web.visitorUrl).searchParams.get('contact')!;
    await agent
      .locator(`[data-testid=contact-item][data-contact-id="${contact}"]`)
      .waitFor({ timeout: 30_000 });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await stack?.close();
  });

  it('typing shows on the other side and clears, both ways', async () => {
    // The first message makes both sides know each other.
    await type(visitor, 'Hello');
    await expect.poll(() => texts(agent)).toEqual(['Hello']);
    await visitor.getByTestId('composer').fill('I would like');
    await expect.poll(() => indicator(agent).textContent()).toBe('Visitor is typing…');
    expect(await indicator(agent).getAttribute('aria-live')).toBe('polite');
    await visitor.getByTestId('composer').fill('');
    await expect.poll(() => indicator(agent).getAttribute('data-active')).toBe('false');
    expect(await indicator(agent).textContent()).toBe('');

    await agent.locator('.lk-pane:not([hidden]) [data-testid=composer]').fill('Let me check');
    await expect.poll(() => indicator(visitor).textContent()).toBe('Agent is typing…');
    await agent.locator('.lk-pane:not([hidden]) [data-testid=composer]').press('Enter');
    await expect.poll(() => indicator(visitor).getAttribute('data-active')).toBe('false');
    await expect.poll(() => texts(visitor)).toEqual(['Hello', 'Let me check']);
    // our own typing is never shown to ourselves
    expect(await indicator(agent).getAttribute('data-active')).toBe('false');
  }, 60_000);

  it('a message becomes seen once the other side looks at it', async () => {
    const own = (p: Page, text: string) =>
      p.locator('[data-testid=message][data-own=true]').filter({ hasText: text });
    await visitor.bringToFront();
    await type(visitor, 'Order 42 please');
    await expect
      .poll(() => own(visitor, 'Order 42 please').getAttribute('data-receipt'))
      .toMatch(/^(sent|delivered|seen)$/);
    await expect.poll(() => texts(agent)).toContain('Order 42 please');
    await agent.bringToFront();
    await agent.evaluate(() => window.dispatchEvent(new Event('focus')));
    await expect
      .poll(() => own(visitor, 'Order 42 please').getAttribute('data-receipt'), { timeout: 15_000 })
      .toBe('seen');
    // the agent's message is seen by the visitor the same way
    await visitor.bringToFront();
    await visitor.evaluate(() => window.dispatchEvent(new Event('focus')));
    await expect
      .poll(() => own(agent, 'Let me check').getAttribute('data-receipt'), { timeout: 15_000 })
      .toBe('seen');
    expect(pageErrors).toEqual([]);
  }, 60_000);
});
