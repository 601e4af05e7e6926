/**
 * Attachments in a deployment that scans them (`startWeb({ scanning: true })`), end to end in
 * Debian's Chromium against a real relay and key service: the session tells the browsers so,
 * a new file shows "Scanning…" with its download blocked on both sides, and a scanner's signed
 * verdict (a `scanner` participant running the real client in a third page,
 * test/fixtures/scanner-harness.ts) updates the cards live: infected stays blocked with the
 * signature shown, clean unblocks the download of the exact bytes; after a reload the verdicts
 * still hold.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintToken } from '@latchkey/tokens';
import { ARGS, CHROMIUM, connected, haveChromium, mustRun } from './_browser.ts';
import { buildFixture } from './_harness.ts';
import { startWebStack, type WebStack } from './_stack.ts';
import type * as ScannerHarness from './fixtures/scanner-harness.ts';

if (!haveChromium && !mustRun) console.log(`skipping scanning tests: ${CHROMIUM} is missing`);
if (!haveChromium && mustRun) {
  describe('scanning tests under CI', () => {
    it('needs Debian chromium', () => {
      expect.fail(`${CHROMIUM} is missing and CI=true: browser tests must not skip`);
    });
  });
}

declare global {
  interface Window {
    LkScanner: typeof ScannerHarness;
  }
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe.runIf(haveChromium)('attachments with a scanner deployed, in Chromium', () => {
  let stack: WebStack;
  let dir: string;
  let scannerScript: string;
  let browser: Browser;
  let visitor: Page;
  let agent: Page;
  let contact: string;
  const pageErrors: string[] = [];
  const pane = () => agent.locator('.lk-pane:not([hidden])');
  const agentCard = (name: string) =>
    pane()
      .getByTestId('file')
      .filter({ has: agent.getByTestId('file-name').getByText(name) });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'latchkey-scanner-harness-'));
    // One after the other: two Vite builds at once in one process (the harness, and the web
    // bundles when stale) do not mix.
    scannerScript = await buildFixture('scanner-harness', 'LkScanner', dir);
    stack = await startWebStack({ web: { scanning: true } });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
    visitor = await (await browser.newContext({ viewport: { width: 360, height: 740 } })).newPage();
    agent = await (await browser.newContext({ viewport: { width: 1100, height: 760 } })).newPage();
    for (const [name, p] of [
      ['visitor', visitor],
      ['agent', agent],
    ] as const)
      p.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
    contact = new URL(stack.web.visitorUrl).searchParams.get('contact')!;
    await visitor.goto(stack.web.visitorUrl);
    await connected(visitor);
    await agent.goto(stack.web.agentUrl);
    await connected(agent);
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await stack?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function attach(name: string, bytes: Buffer): Promise<void> {
    const [chooser] = await Promise.all([
      visitor.waitForEvent('filechooser'),
      visitor.getByTestId('attach').click(),
    ]);
    await chooser.setFiles({ name, mimeType: 'application/pdf', buffer: bytes });
  }

  /** A scanner participant (real client, in a page of the web origin) posts a verdict. */
  async function verdict(name: string, v: 'clean' | 'infected', signature?: string) {
    const token = await mintToken(stack.secret, {
      contactId: contact,
      participantId: 'scanner-1',
      role: 'scanner',
      ttlSeconds: 600,
    });
    // The pages' CSP allows only same-origin scripts: this test page bypasses it for the harness.
    const ctx = await browser.newContext({ bypassCSP: true });
    try {
      const page = await ctx.newPage();
      await page.goto(`${stack.web.url}/`);
      await page.addScriptTag({ content: scannerScript });
      return await page.evaluate((r) => window.LkScanner.postVerdict(r), {
        relayUrl: stack.relayUrl,
        keysUrl: stack.keysUrl,
        serviceKey: stack.serviceKey,
        token,
        name,
        verdict: v,
        ...(signature === undefined ? {} : { signature }),
      });
    } finally {
      await ctx.close();
    }
  }

  const bad = Buffer.from('X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*');
  const good = Buffer.from('%PDF-1.4\n% a harmless document\n');

  it('a new file is "Scanning…" with its download blocked on both sides', async () => {
    await attach('eicar.pdf', bad);
    const card = agentCard('eicar.pdf');
    await card.waitFor({ timeout: 30_000 });
    for (const c of [card, visitor.getByTestId('file').first()]) {
      await expect.poll(() => c.getAttribute('data-scan')).toBe('pending');
      expect(await c.getByTestId('scan-badge').textContent()).toBe('Scanning…');
      expect(await c.getByTestId('download').isDisabled()).toBe(true);
      expect(await c.locator('.lk-file-why').textContent()).toContain(
        'once the virus scan is done',
      );
    }
  });

  it("a scanner's verdict updates the cards live: infected stays blocked, clean unblocks", async () => {
    await verdict('eicar.pdf', 'infected', 'Eicar-Test-Signature');
    const infected = agentCard('eicar.pdf');
    await expect
      .poll(() => infected.getAttribute('data-scan'), { timeout: 15_000 })
      .toBe('infected');
    expect(await infected.getByTestId('scan-badge').textContent()).toBe(
      'Blocked: Eicar-Test-Signature',
    );
    expect(await infected.getByTestId('download').isDisabled()).toBe(true);
    await expect
      .poll(() => visitor.getByTestId('file').first().getAttribute('data-scan'))
      .toBe('infected');
    // A verdict is no message of its own.
    expect(await pane().getByTestId('message').count()).toBe(1);

    await attach('invoice.pdf', good);
    const clean = agentCard('invoice.pdf');
    await clean.waitFor({ timeout: 30_000 });
    expect(await clean.getAttribute('data-scan')).toBe('pending');
    await verdict('invoice.pdf', 'clean');
    await expect.poll(() => clean.getAttribute('data-scan'), { timeout: 15_000 }).toBe('clean');
    expect(await clean.getByTestId('scan-badge').textContent()).toBe('Clean');
    const [download] = await Promise.all([
      agent.waitForEvent('download'),
      clean.getByTestId('download').click(),
    ]);
    expect(sha256(await readFile((await download.path())!))).toBe(sha256(good));
  });

  it('after a reload the verdicts still hold', async () => {
    await agent.reload();
    await connected(agent);
    await expect
      .poll(() => agentCard('invoice.pdf').getAttribute('data-scan'), { timeout: 30_000 })
      .toBe('clean');
    expect(await agentCard('eicar.pdf').getAttribute('data-scan')).toBe('infected');
    expect(await agentCard('eicar.pdf').getByTestId('download').isDisabled()).toBe(true);
    expect(await pane().getByTestId('message').count()).toBe(2);
    expect(pageErrors).toEqual([]);
  });
});
