/**
 * Bare Chromium pages with the attachment components' harness (test/fixtures/file-harness.ts,
 * bundled by Vite) for file-card.test.ts and attach-sources.test.ts: call `fileHarnessPages()`
 * inside a `describe`; `fresh()` gives a new page (its own context) with `window.LkFiles`, and
 * any page error fails the suite.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, expect } from 'vitest';
import { ARGS, CHROMIUM } from './_browser.ts';
import { buildFixture } from './_harness.ts';
import type * as Harness from './fixtures/file-harness.ts';

declare global {
  interface Window {
    LkFiles: typeof Harness;
  }
}

export type { Harness };

export function fileHarnessPages(): { fresh(): Promise<Page> } {
  let dir: string;
  let script: string;
  let browser: Browser;
  let page: Page | undefined;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'latchkey-files-harness-'));
    script = await buildFixture('file-harness', 'LkFiles', dir);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  }, 120_000);

  afterAll(async () => {
    expect(pageErrors).toEqual([]);
    await browser?.close();
    await rm(dir, { recursive: true, force: true });
  });

  return {
    async fresh(): Promise<Page> {
      await page?.context().close();
      const ctx = await browser.newContext({ viewport: { width: 420, height: 800 } });
      const p = await ctx.newPage();
      page = p;
      p.on('pageerror', (e) => pageErrors.push(e.message));
      await p.setContent(
        '<!doctype html><html lang="en"><body><div id="root" class="lk-root"></div></body></html>',
      );
      await p.addScriptTag({ content: script });
      return p;
    },
  };
}
