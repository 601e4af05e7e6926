/**
 * Attachments end to end in Debian's Chromium (playwright-core; never a browser download): a
 * visitor on the demo page and an agent on the console against a real relay (its file API and
 * blob directory) and key service. Files are encrypted in the sending browser and uploaded as
 * ciphertext; the agent sees a file card with a preview from the decrypted thumbnail, downloads
 * the exact bytes (SHA-256 compared), also after a reload; drop and paste send files; a cancelled
 * upload leaves no message; a blob changed on the relay's disk shows "could not decrypt".
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WEB_ROOT } from '../src/build.ts';
import { ARGS, CHROMIUM, connected, haveChromium, mustRun, type } from './_browser.ts';
import { startWebStack, type WebStack } from './_stack.ts';

const OUT = join(WEB_ROOT, 'test-output');

if (!haveChromium && !mustRun) console.log(`skipping attachment tests: ${CHROMIUM} is missing`);
if (!haveChromium && mustRun) {
  describe('attachment tests under CI', () => {
    it('needs Debian chromium', () => {
      expect.fail(`${CHROMIUM} is missing and CI=true: browser tests must not skip`);
    });
  });
}

declare global {
  interface Window {
    /** aria-valuenow of every upload progress bar seen, in order (an observer of the page). */
    lkProgressSeen: number[];
  }
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** A PNG drawn by the browser itself (a real picture to thumbnail), as bytes. */
async function drawPng(p: Page, w: number, h: number): Promise<Buffer> {
  const bytes = await p.evaluate(
    async ([width, height]) => {
      const c = new OffscreenCanvas(width, height);
      const ctx = c.getContext('2d')!;
      const g = ctx.createLinearGradient(0, 0, width, height);
      g.addColorStop(0, '#0b57d0');
      g.addColorStop(1, '#7cc4ff');
      ctx.fillStyle = g;
      ctx.fillRect(0, 0, width, height);
      ctx.fillStyle = '#fff';
      ctx.font = `bold ${Math.round(height / 6)}px sans-serif`;
      ctx.fillText('Order #42', width / 10, height / 2);
      ctx.fillStyle = '#f4b400';
      ctx.beginPath();
      ctx.arc(width * 0.8, height * 0.3, height / 6, 0, Math.PI * 2);
      ctx.fill();
      const blob = await c.convertToBlob({ type: 'image/png' });
      return Array.from(new Uint8Array(await blob.arrayBuffer()));
    },
    [w, h] as const,
  );
  return Buffer.from(bytes);
}

/** Records the aria-valuenow of every upload progress bar the page shows. */
async function watchProgress(p: Page): Promise<void> {
  await p.evaluate(() => {
    window.lkProgressSeen = [];
    const seen = (): void => {
      for (const bar of document.querySelectorAll(
        '[data-testid=upload-progress] [role=progressbar]',
      ))
        window.lkProgressSeen.push(Number(bar.getAttribute('aria-valuenow')));
    };
    new MutationObserver(seen).observe(document.body, {
      subtree: true,
      childList: true,
      attributes: true,
      attributeFilter: ['aria-valuenow'],
    });
  });
}

describe.runIf(haveChromium)('attachments in Chromium', () => {
  let stack: WebStack;
  let browser: Browser;
  let visitor: Page;
  let agent: Page;
  let contact: string;
  const pageErrors: string[] = [];
  /** The agent's visible conversation. */
  const pane = () => agent.locator('.lk-pane:not([hidden])');
  const agentFiles = () => pane().getByTestId('file');
  const visitorFiles = () => visitor.getByTestId('file');

  beforeAll(async () => {
    await mkdir(OUT, { recursive: true });
    stack = await startWebStack();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
    const visitorCtx = await browser.newContext({ viewport: { width: 360, height: 740 } });
    const agentCtx = await browser.newContext({
      viewport: { width: 1100, height: 760 },
      acceptDownloads: true,
    });
    visitor = await visitorCtx.newPage();
    agent = await agentCtx.newPage();
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
  });

  /** Downloads the agent's file card `i` and returns its bytes. */
  async function agentDownload(i: number): Promise<{ bytes: Buffer; name: string }> {
    const [download] = await Promise.all([
      agent.waitForEvent('download'),
      agentFiles().nth(i).getByTestId('download').click(),
    ]);
    return { bytes: await readFile((await download.path())!), name: download.suggestedFilename() };
  }

  let png: Buffer;

  it('a PNG attached with the Attach button shows progress, then a card with a preview at the agent', async () => {
    png = await drawPng(visitor, 800, 500);
    await watchProgress(visitor);
    const [chooser] = await Promise.all([
      visitor.waitForEvent('filechooser'),
      visitor.getByRole('button', { name: 'Attach a file' }).click(),
    ]);
    await chooser.setFiles({ name: 'order-42.png', mimeType: 'image/png', buffer: png });
    const card = agentFiles().first();
    await card.waitFor({ timeout: 30_000 });
    // Progress was shown while it went out, and is gone once sent.
    const seen = await visitor.evaluate(() => window.lkProgressSeen);
    expect(seen.length).toBeGreaterThan(0);
    expect(Math.max(...seen)).toBe(100);
    await expect.poll(() => visitor.getByTestId('upload-progress').count()).toBe(0);

    expect(await card.getAttribute('data-scan')).toBe('unscanned');
    expect(await card.getByTestId('scan-badge').textContent()).toBe('Not scanned');
    expect(await card.getByTestId('file-name').textContent()).toBe('order-42.png');
    expect(await card.getByTestId('download').isEnabled()).toBe(true);
    const preview = card.getByTestId('file-preview');
    await preview.waitFor({ timeout: 15_000 });
    await expect
      .poll(() => preview.evaluate((img) => (img as HTMLImageElement).naturalWidth))
      .toBe(320);
    expect(await preview.evaluate((img) => (img as HTMLImageElement).naturalHeight)).toBe(200);
    expect(await preview.getAttribute('src')).toMatch(/^blob:/);
    // The visitor sees its own file delivered, as a card too.
    await visitorFiles().first().waitFor();
    await expect
      .poll(() => visitor.locator('[data-testid=message]').first().getAttribute('data-state'))
      .toBe('delivered');
    // Nothing of the file in the relay's store but ciphertext: its name is not in the envelope.
    const db = new Database(join(stack.dir, 'relay', 'messages.db'), { readonly: true });
    try {
      const rows = db
        .prepare('SELECT envelope FROM messages WHERE contact_id = ?')
        .all(contact) as { envelope: string }[];
      expect(rows).toHaveLength(1);
      expect(rows[0]!.envelope).not.toContain('order-42');
    } finally {
      db.close();
    }
    await pane()
      .locator('.lk-conv')
      .screenshot({ path: join(OUT, 'attachments.png') });
  });

  it('the agent downloads the exact bytes, saved under the file name', async () => {
    const got = await agentDownload(0);
    expect(got.name).toBe('order-42.png');
    expect(sha256(got.bytes)).toBe(sha256(png));
    await expect.poll(() => pane().getByTestId('download-progress').count()).toBe(0);
  });

  it('a dropped file and a pasted image are each sent', async () => {
    const conv = visitor.locator('.lk-conv');
    const dt = await visitor.evaluateHandle(() => {
      const d = new DataTransfer();
      d.items.add(new File(['dropped text file\n'], 'notes.txt', { type: 'text/plain' }));
      return d;
    });
    await conv.dispatchEvent('dragenter', { dataTransfer: dt });
    await conv.dispatchEvent('drop', { dataTransfer: dt });
    await expect.poll(() => agentFiles().count(), { timeout: 30_000 }).toBe(2);
    expect(await agentFiles().nth(1).getByTestId('file-name').textContent()).toBe('notes.txt');

    const small = await drawPng(visitor, 120, 90);
    await visitor.evaluate((bytes) => {
      const d = new DataTransfer();
      d.items.add(new File([new Uint8Array(bytes)], 'image.png', { type: 'image/png' }));
      const ev = new ClipboardEvent('paste', { clipboardData: d, bubbles: true, cancelable: true });
      document.querySelector('[data-testid=composer]')!.dispatchEvent(ev);
    }, Array.from(small));
    await expect.poll(() => agentFiles().count(), { timeout: 30_000 }).toBe(3);
    const pasted = agentFiles().nth(2);
    expect(await pasted.getByTestId('file-name').textContent()).toBe('image.png');
    await pasted.getByTestId('file-preview').waitFor({ timeout: 15_000 });
    const got = await agentDownload(2);
    expect(sha256(got.bytes)).toBe(sha256(small));
    // The visitor's cards fit the 360 px widget: no horizontal scrolling.
    await expect.poll(() => visitorFiles().count()).toBe(3);
    const overflow = await visitor.evaluate(
      () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
    );
    expect(overflow).toBeLessThanOrEqual(0);
    await visitor.locator('.lk-widget').screenshot({ path: join(OUT, 'attachments-visitor.png') });
  });

  it('an upload cancelled midway sends no message', async () => {
    // Handed over as a path: a buffer this big would crawl through the protocol.
    const big = join(stack.dir, 'big.bin');
    await writeFile(big, Buffer.alloc(40 * 1024 * 1024, 0x5a));
    const [chooser] = await Promise.all([
      visitor.waitForEvent('filechooser'),
      visitor.getByTestId('attach').click(),
    ]);
    // The second upload request is held until Cancel is clicked: on a quiet machine the whole
    // file would otherwise be stored before the click (a race, not a cancel).
    let release = (): void => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let patches = 0;
    await visitor.route('**/v1/files/**', async (route) => {
      if (route.request().method() === 'PATCH' && ++patches >= 2) {
        await gate;
        await route.abort().catch(() => undefined);
        return;
      }
      await route.continue();
    });
    await chooser.setFiles(big);
    const bar = visitor.getByTestId('upload-progress');
    await expect
      .poll(async () => Number(await bar.getByRole('progressbar').getAttribute('aria-valuenow')), {
        timeout: 30_000,
        interval: 50,
      })
      .toBeGreaterThan(0);
    await bar.getByRole('button', { name: 'Cancel upload of big.bin' }).click();
    release();
    await expect.poll(() => bar.count(), { timeout: 15_000 }).toBe(0);
    await visitor.unroute('**/v1/files/**');
    expect(patches).toBe(2);
    // No error for a cancel, and the next message follows the last file directly.
    expect(await visitor.getByTestId('upload-error').count()).toBe(0);
    await type(visitor, 'after the cancelled upload');
    await expect
      .poll(() => pane().locator('[data-testid=message] .lk-text').allTextContents())
      .toContain('after the cancelled upload');
    expect(await agentFiles().count()).toBe(3);
    expect(await pane().getByTestId('message').count()).toBe(4);
    const db = new Database(join(stack.dir, 'relay', 'messages.db'), { readonly: true });
    try {
      const row = db
        .prepare('SELECT COUNT(*) AS n FROM messages WHERE contact_id = ?')
        .get(contact) as { n: number };
      expect(row.n).toBe(4);
    } finally {
      db.close();
    }
  });

  it('a download after a reload still gives the exact bytes', async () => {
    await agent.reload();
    await connected(agent);
    await expect.poll(() => agentFiles().count(), { timeout: 30_000 }).toBe(3);
    const got = await agentDownload(0);
    expect(sha256(got.bytes)).toBe(sha256(png));
  });

  it('a blob changed on the relay disk shows "could not decrypt", and nothing is saved', async () => {
    const blobs = join(stack.dir, 'relay', 'messages.db.files');
    const before = new Set(await readdir(blobs));
    const payload = Buffer.alloc(300 * 1024, 7);
    const [chooser] = await Promise.all([
      visitor.waitForEvent('filechooser'),
      visitor.getByTestId('attach').click(),
    ]);
    await chooser.setFiles({ name: 'contract.pdf', mimeType: 'application/pdf', buffer: payload });
    await expect.poll(() => agentFiles().count(), { timeout: 30_000 }).toBe(4);
    // The new blob (no thumbnail for a PDF): one byte in its middle flipped.
    const added = (await readdir(blobs)).filter((f) => !before.has(f));
    const sized = await Promise.all(
      added.map(async (f) => ({ f, size: (await stat(join(blobs, f))).size })),
    );
    const target = sized.find((s) => s.size > payload.length);
    expect(target, JSON.stringify(sized)).toBeDefined();
    const path = join(blobs, target!.f);
    const bytes = await readFile(path);
    bytes[bytes.length >> 1]! ^= 0x01;
    await writeFile(path, bytes);

    let downloads = 0;
    agent.on('download', () => downloads++);
    const card = agentFiles().nth(3);
    await card.getByTestId('download').click();
    await expect.poll(() => card.getAttribute('data-error'), { timeout: 30_000 }).toBe('decrypt');
    expect((await card.textContent())?.toLowerCase()).toContain('could not decrypt');
    expect(downloads).toBe(0);
    expect(pageErrors).toEqual([]);
  });
});
