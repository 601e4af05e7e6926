/**
 * The agent queue in Debian's Chromium (playwright-core) against a real relay, key service and
 * web server: two agent consoles race to claim the same waiting contact (exactly one gets it and
 * opens its conversation, the other sees it leave its queue), the winner chats with the visitor,
 * and an agent who is away sees no queue and is refused a claim by the backend. The screenshot
 * `test-output/queue.png` (docs/queue.png) is a console with a waiting contact.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WEB_ROOT } from '../src/build.ts';
import { ARGS, CHROMIUM, connected, haveChromium, texts, type } from './_browser.ts';
import { startWebStack, type WebStack } from './_stack.ts';
import { adminAuthorization, deriveAdminKey } from '@latchkey/tokens';

const OUT = join(WEB_ROOT, 'test-output');

describe.runIf(haveChromium)('agent queue in Chromium', () => {
  let stack: WebStack;
  let browser: Browser;
  let ann: Page;
  let bob: Page;
  const pageErrors: string[] = [];
  /** The first test's contact and who won it. */
  let raced = { contact: '', winner: null as Page | null, loser: null as Page | null };

  const admin = (): string => adminAuthorization(deriveAdminKey(stack.secret));
  /** The console of a named agent (queue mode), with the demo key from the printed URL. */
  const consoleUrl = (agent: string): string =>
    `${stack.web.url}/agent?agent=${agent}${new URL(stack.web.agentUrl).hash}`;
  const item = (p: Page, contact: string) =>
    p.locator(`[data-testid=queue-item][data-contact-id="${contact}"]`);
  const mine = (p: Page, contact: string) =>
    p.locator(`[data-testid=contact-item][data-contact-id="${contact}"]`);

  /** Calls the demo backend from the page, as the console does (its key and agent name). */
  async function fromPage(
    p: Page,
    agent: string,
    path: string,
    body: Record<string, string> = {},
  ): Promise<{ status: number; json: { error?: { code: string }; contactId?: string } }> {
    return p.evaluate(
      async ([agentId, url, b]) => {
        const res = await fetch(url, {
          method: 'POST',
          headers: {
            'x-latchkey-demo-key': sessionStorage.getItem('latchkey:demo-key') ?? '',
            'x-latchkey-demo-agent': agentId!,
            'content-type': 'application/json',
          },
          body: JSON.stringify(b),
        });
        return { status: res.status, json: await res.json() };
      },
      [agent, path, body] as const,
    );
  }

  beforeAll(async () => {
    stack = await startWebStack();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
    ann = await (await browser.newContext({ viewport: { width: 1100, height: 720 } })).newPage();
    bob = await (await browser.newContext({ viewport: { width: 1100, height: 720 } })).newPage();
    for (const [name, p] of [
      ['ann', ann],
      ['bob', bob],
    ] as const)
      p.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await stack?.close();
  });

  it('two agents race to claim one contact: exactly one gets it, the other sees it gone', async () => {
    const visitor = await (
      await browser.newContext({ viewport: { width: 360, height: 740 } })
    ).newPage();
    await visitor.goto(stack.web.visitorUrl);
    await connected(visitor);
    const contact = new URL(stack.web.visitorUrl).searchParams.get('contact')!;

    await Promise.all([ann.goto(consoleUrl('ann')), bob.goto(consoleUrl('bob'))]);
    await Promise.all([item(ann, contact).waitFor(), item(bob, contact).waitFor()]);
    expect(await ann.getByTestId('availability').inputValue()).toBe('available');
    expect(await ann.getByTestId('capacity-load').textContent()).toBe('0 of 5 contacts');

    // Both click at once.
    await Promise.all([
      item(ann, contact).getByTestId('claim').click(),
      item(bob, contact).getByTestId('claim').click(),
    ]);
    const settled = async (): Promise<number[]> => [
      (await mine(ann, contact).count()) + (await item(ann, contact).count()) * 10,
      (await mine(bob, contact).count()) + (await item(bob, contact).count()) * 10,
    ];
    // The winner holds it (1), the loser has neither it nor its queue entry (0).
    await expect.poll(async () => (await settled()).sort()).toEqual([0, 1]);
    const [winner, loser] = (await mine(ann, contact).count()) === 1 ? [ann, bob] : [bob, ann];
    expect(await winner.getByTestId('capacity-load').textContent()).toBe('1 of 5 contacts');

    // The winner's console opened the conversation; the visitor and the agent talk.
    await connected(winner);
    await type(visitor, 'Is anyone there?');
    await expect.poll(() => texts(winner)).toEqual(['Is anyone there?']);
    // The loser gets no token for it either.
    const loserName = loser === ann ? 'ann' : 'bob';
    const refused = await fromPage(loser, loserName, '/api/demo/agent-session', {
      contactId: contact,
    });
    expect([refused.status, refused.json.error?.code]).toEqual([403, 'FORBIDDEN']);
    expect(await texts(loser)).toEqual([]);
    raced = { contact, winner, loser };
    await visitor.context().close();
  });

  it('the holder transfers to another agent, who reads the history; back to the queue after', async () => {
    const { contact, winner, loser } = raced;
    if (!winner || !loser) throw new Error('needs the race test');
    const loserName = loser === ann ? 'ann' : 'bob';
    const winnerName = winner === ann ? 'ann' : 'bob';
    const pane = (p: Page) => p.locator(`.lk-pane[data-contact-id="${contact}"]`);
    await pane(winner).getByTestId('transfer-to').fill(loserName);
    await pane(winner).getByTestId('transfer').click();
    await mine(winner, contact).waitFor({ state: 'detached' });
    await mine(loser, contact).waitFor();
    await mine(loser, contact).click();
    await expect.poll(() => texts(loser)).toEqual(['Is anyone there?']);
    // The key service saw the transfer: the old holder left there too.
    const keys = await fetch(`${stack.keysUrl}/admin/v1/contacts/${contact}`, {
      headers: { authorization: admin() },
    });
    const info = (await keys.json()) as {
      contact: { participants: { participantId: string; state: string }[] };
    };
    expect(info.contact.participants).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ participantId: winnerName, state: 'left' }),
        expect.objectContaining({ participantId: loserName, state: 'active' }),
      ]),
    );

    await pane(loser).getByTestId('release').click();
    await mine(loser, contact).waitFor({ state: 'detached' });
    // Back in the queue; the agent who transferred it away may not take it again.
    await item(winner, contact).waitFor();
    await item(winner, contact).getByTestId('claim').click();
    await expect
      .poll(() => winner.getByRole('status').last().textContent())
      .toContain('not allowed');
    expect(await mine(winner, contact).count()).toBe(0);
  });

  it('an agent who is away sees no queue and cannot claim', async () => {
    // A new waiting contact, as a visitor session starts one.
    const created = await fromPage(ann, 'ann', '/api/demo/visitor-session');
    expect(created.status).toBe(200);
    const contact = created.json.contactId!;
    await item(bob, contact).waitFor();
    await mkdir(OUT, { recursive: true });
    await bob.screenshot({ path: join(OUT, 'queue.png') });

    await bob.getByTestId('availability').selectOption('away');
    await item(bob, contact).waitFor({ state: 'detached' });
    await expect
      .poll(() => bob.getByTestId('queue').getAttribute('data-availability'))
      .toBe('away');
    expect(await bob.locator('[data-testid=claim]').count()).toBe(0);
    const claim = await fromPage(bob, 'bob', `/api/demo/queue/${contact}/claim`);
    expect([claim.status, claim.json.error?.code]).toEqual([403, 'FORBIDDEN']);

    await bob.getByTestId('availability').selectOption('available');
    await item(bob, contact).getByTestId('claim').click();
    await mine(bob, contact).waitFor();
    await item(ann, contact).waitFor({ state: 'detached' });
    expect(pageErrors).toEqual([]);
  });
});
