/**
 * The attachment components in Debian's Chromium, on a bare page (test/fixtures/file-harness.ts,
 * bundled by Vite): the file card in every scan state (badge, blocked download with its reason,
 * a verdict arriving), the name as text only, the preview only from a thumbnail of an allowed
 * declared type as an object URL that is revoked, thumbnails made in the browser (JPEG, at most
 * 320 px, within the byte limit, never of SVG), a download saved as application/octet-stream
 * under the file's name, "could not decrypt" on a failed stream, and cancel. The attach sources,
 * progress and upload errors are in attach-sources.test.ts, the end-to-end flows against a real
 * relay in attachments.test.ts.
 */
import { readFile } from 'node:fs/promises';
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { CHROMIUM, haveChromium, mustRun } from './_browser.ts';
import { fileHarnessPages, type Harness } from './_file-page.ts';

if (!haveChromium && !mustRun) console.log(`skipping file card tests: ${CHROMIUM} is missing`);
if (!haveChromium && mustRun) {
  describe('file card tests under CI', () => {
    it('needs Debian chromium', () => {
      expect.fail(`${CHROMIUM} is missing and CI=true: browser tests must not skip`);
    });
  });
}

type Info = Parameters<typeof Harness.card>[0];

function info(extra: Partial<Info> = {}): Info {
  return {
    name: 'report.pdf',
    size: 5,
    type: 'application/pdf',
    thumbnail: null,
    scan: 'unscanned',
    ...extra,
  };
}

/** A 1 x 1 GIF. */
const GIF_1x1 = [
  ...new TextEncoder().encode('GIF89a'),
  ...[1, 0, 1, 0, 0x80, 0, 0, 0xff, 0xff, 0xff, 0, 0, 0, 0x21, 0xf9, 4, 1, 0, 0, 0, 0],
  ...[0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 1, 0, 0x3b],
];
/** The start of a PNG that declares 30,000 x 30,000 pixels (3.6 GB decoded) in 33 bytes. */
const hugePng = [
  ...[0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13],
  ...new TextEncoder().encode('IHDR'),
  ...[0, 0, 0x75, 0x30, 0, 0, 0x75, 0x30, 8, 2, 0, 0, 0, 0, 0, 0, 0],
];

describe.runIf(haveChromium)('attachment components in Chromium', () => {
  const { fresh } = fileHarnessPages();

  const mount = (p: Page, i: Info, opts: Parameters<typeof Harness.card>[1] = {}) =>
    p.evaluate(([a, b]) => window.LkFiles.card(a, b), [i, opts] as const);
  const png = (p: Page, w: number, h: number) =>
    p.evaluate(([a, b]) => window.LkFiles.picture(a, b, 'image/png'), [w, h] as const);

  it('shows each scan state with its badge, and blocks the download with a reason', async () => {
    const p = await fresh();
    const cases = [
      { scan: 'unscanned', scanning: false, badge: 'Not scanned', blocked: false },
      { scan: 'pending', scanning: true, badge: 'Scanning…', blocked: true },
      { scan: 'pending', scanning: false, badge: 'Scanning…', blocked: false },
      { scan: 'clean', scanning: true, badge: 'Clean', blocked: false },
      { scan: 'infected', scanning: true, badge: 'Blocked: Eicar-Test-Signature', blocked: true },
      { scan: 'error', scanning: true, badge: 'Scan failed', blocked: true },
    ] as const;
    for (const c of cases) {
      await mount(p, info({ scan: c.scan, signature: 'Eicar-Test-Signature' }), {
        scanning: c.scanning,
      });
    }
    const cards = p.getByTestId('file');
    for (const [i, c] of cases.entries()) {
      const card = cards.nth(i);
      expect(await card.getAttribute('data-scan')).toBe(c.scan);
      expect(await card.getByTestId('scan-badge').textContent()).toBe(c.badge);
      const button = card.getByTestId('download');
      expect(await button.isDisabled(), `${c.scan} scanning=${c.scanning}`).toBe(c.blocked);
      const why = card.locator('.lk-file-why');
      expect(await why.isVisible()).toBe(c.blocked);
      if (c.blocked) {
        // The reason is what describes the disabled button.
        const id = await why.getAttribute('id');
        expect(await button.getAttribute('aria-describedby')).toBe(id);
        expect(await why.textContent()).toMatch(/blocked|once the virus scan is done/i);
      }
    }
    // A verdict arrives: pending (blocked) becomes clean (downloadable), or infected.
    await p.evaluate(() => window.LkFiles.setScan(1, 'clean'));
    expect(await cards.nth(1).getAttribute('data-scan')).toBe('clean');
    expect(await cards.nth(1).getByTestId('download').isEnabled()).toBe(true);
    await p.evaluate(() => window.LkFiles.setScan(0, 'infected', 'Win.Test.EICAR_HDB-1'));
    expect(await cards.nth(0).getByTestId('scan-badge').textContent()).toBe(
      'Blocked: Win.Test.EICAR_HDB-1',
    );
    expect(await cards.nth(0).getByTestId('download').isDisabled()).toBe(true);
    // An unknown state from the wire is shown as a failed scan: blocked, not downloadable.
    await p.evaluate(() => window.LkFiles.setScan(3, 'weird' as never));
    expect(await cards.nth(3).getAttribute('data-scan')).toBe('error');
    expect(await cards.nth(3).getByTestId('download').isDisabled()).toBe(true);
  });

  it('shows the name as text only; directional controls show as marks', async () => {
    const p = await fresh();
    await p.evaluate(() => ((window as unknown as { pwned: number }).pwned = 0));
    await mount(p, info({ name: '<img src=x onerror="window.pwned=1">.png', type: 'text/html' }));
    await mount(p, info({ name: 'invoice\u202Efdp.exe', type: 'application/x-msdownload' }));
    const names = p.getByTestId('file-name');
    expect(await names.nth(0).textContent()).toBe('<img src=x onerror="window.pwned=1">.png');
    expect(await p.locator('#root img').count()).toBe(0);
    expect(await p.evaluate(() => (window as unknown as { pwned: number }).pwned)).toBe(0);
    expect(await names.nth(1).textContent()).toBe('invoice[U+202E]fdp.exe');
    expect(await names.nth(1).locator('.lk-bidi-mark').count()).toBe(1);
    expect(await p.getByTestId('file').nth(1).locator('.lk-file-icon').textContent()).toBe('FILE');
  });

  it('previews only a thumbnail of an allowed declared type, as an object URL it revokes', async () => {
    const p = await fresh();
    const bytes = await png(p, 64, 32);
    // The file claims to be HTML: the preview still uses the thumbnail's own (allowed) type.
    await mount(
      p,
      info({
        name: 'a.html',
        type: 'text/html',
        thumbnail: { type: 'image/png', width: 64, height: 32 },
      }),
      { thumb: bytes },
    );
    const img = p.getByTestId('file').nth(0).getByTestId('file-preview');
    await img.waitFor();
    await expect.poll(() => img.evaluate((e) => (e as HTMLImageElement).naturalWidth)).toBe(64);
    expect(await img.getAttribute('src')).toMatch(/^blob:/);
    expect(await img.getAttribute('alt')).toBe('Preview of a.html');
    const urls = () => p.evaluate(() => window.LkFiles.objectUrls.map((o) => ({ ...o })));
    await expect
      .poll(async () => (await urls()).map((o) => [o.type, o.revoked]))
      .toEqual([['image/png', true]]);
    // Declared SVG or HTML thumbnails (or none) make no image and no object URL; nor do bytes
    // of another type than declared, or a small PNG that declares a huge picture (a bomb).
    for (const type of ['image/svg+xml', 'text/html', 'image/gif', 'image/jpeg']) {
      await mount(p, info({ thumbnail: { type, width: 10, height: 10 } }), { thumb: bytes });
    }
    await mount(p, info({ thumbnail: { type: 'image/png', width: 10, height: 10 } }), {
      thumb: hugePng,
    });
    await expect.poll(() => p.locator('#root .lk-thumb-wait').count()).toBe(0);
    expect(await p.locator('#root img').count()).toBe(1);
    expect((await urls()).length).toBe(1);
    // A file the scanner flags shows no preview, also one already shown.
    const flagged = await mount(
      p,
      info({ scan: 'infected', thumbnail: { type: 'image/png', width: 64, height: 32 } }),
      { thumb: bytes, scanning: true },
    );
    await p.evaluate((i) => window.LkFiles.setScan(i, 'infected'), 0);
    await p.waitForTimeout(200);
    expect(await p.locator('#root img').count()).toBe(0);
    expect(flagged).toBe(6);
  });

  it('reads the size of PNG, JPEG, WebP and GIF pictures from their headers', async () => {
    const p = await fresh();
    for (const type of ['image/png', 'image/jpeg', 'image/webp']) {
      const bytes = await p.evaluate((t) => window.LkFiles.picture(37, 23, t), type);
      expect(await p.evaluate((b) => window.LkFiles.header(b), bytes), type).toEqual({
        type,
        width: 37,
        height: 23,
      });
    }
    expect(await p.evaluate((b) => window.LkFiles.header(b), GIF_1x1)).toEqual({
      type: 'image/gif',
      width: 1,
      height: 1,
    });
    expect(await p.evaluate((b) => window.LkFiles.header(b), hugePng)).toEqual({
      type: 'image/png',
      width: 30000,
      height: 30000,
    });
    const svg = [...new TextEncoder().encode('<svg xmlns="http://www.w3.org/2000/svg"/>')];
    for (const b of [svg, [0xff, 0xd8, 0xff], [0x89, 0x50], []])
      expect(await p.evaluate((x) => window.LkFiles.header(x), b)).toBeNull();
  });

  it('makes JPEG thumbnails of at most 320 px within the byte limit, never of SVG', async () => {
    const p = await fresh();
    const t = await p.evaluate(() => window.LkFiles.thumbnailOf(1000, 500, 'image/png', false));
    expect(t).toMatchObject({ type: 'image/jpeg', width: 320, height: 160 });
    expect(t!.head).toEqual([0xff, 0xd8, 0xff]);
    expect(t!.size).toBeLessThanOrEqual(256 * 1024);
    // Small pictures are not enlarged; WebP, JPEG and GIF inputs work too.
    for (const type of ['image/webp', 'image/jpeg', 'image/png']) {
      expect(
        await p.evaluate((ty) => window.LkFiles.thumbnailOf(40, 30, ty, false), type),
      ).toMatchObject({ type: 'image/jpeg', width: 40, height: 30 });
    }
    const gif = GIF_1x1;
    expect(await p.evaluate((b) => window.LkFiles.thumbnail(b, 'image/gif'), gif)).toMatchObject({
      type: 'image/jpeg',
      width: 1,
      height: 1,
    });
    // A small file that declares a huge picture is not decoded.
    expect(await p.evaluate((b) => window.LkFiles.thumbnail(b, 'image/png'), hugePng)).toBeNull();
    // SVG: never, whether declared as such or dressed up as PNG.
    const svg = Array.from(
      new TextEncoder().encode(
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
      ),
    );
    expect(await p.evaluate((b) => window.LkFiles.thumbnail(b, 'image/svg+xml'), svg)).toBeNull();
    expect(await p.evaluate((b) => window.LkFiles.thumbnail(b, 'image/png'), svg)).toBeNull();
    // Not decodable, or no quality small enough: none.
    expect(
      await p.evaluate(() => window.LkFiles.thumbnail([0x89, 0x50, 0x4e, 0x47], 'image/png')),
    ).toBeNull();
    expect(
      await p.evaluate(() =>
        window.LkFiles.thumbnailOf(300, 300, 'image/png', true, { maxBytes: 2000 }),
      ),
    ).toBeNull();
    // A document is never thumbnailed, even when its bytes are a picture.
    const small = await png(p, 20, 20);
    expect(
      await p.evaluate((b) => window.LkFiles.thumbnail(b, 'application/pdf'), small),
    ).toBeNull();
  });

  it('saves a download as application/octet-stream under its name, with progress', async () => {
    const p = await fresh();
    const chunks = [
      [1, 2, 3],
      [4, 5],
    ];
    await mount(p, info({ name: 'payload.html', type: 'text/html' }), { stream: { chunks } });
    const [download] = await Promise.all([
      p.waitForEvent('download'),
      p.getByTestId('download').click(),
    ]);
    expect(download.suggestedFilename()).toBe('payload.html');
    expect([...(await readFile((await download.path())!))]).toEqual([1, 2, 3, 4, 5]);
    const types = await p.evaluate(() => window.LkFiles.objectUrls.map((o) => o.type));
    expect(types).toEqual(['application/octet-stream']);
    await expect.poll(() => p.getByTestId('download-progress').count()).toBe(0);
    expect(await p.getByTestId('download').isEnabled()).toBe(true);
  });

  it('a stream that fails to decrypt saves nothing and says "could not decrypt"', async () => {
    const p = await fresh();
    let downloads = 0;
    p.on('download', () => downloads++);
    await mount(p, info(), { stream: { chunks: [[1, 2, 3]], fail: 'DECRYPT_FAILED' } });
    await p.getByTestId('download').click();
    const card = p.getByTestId('file');
    await expect.poll(() => card.getAttribute('data-error')).toBe('decrypt');
    expect((await card.textContent())?.toLowerCase()).toContain('could not decrypt');
    expect(downloads).toBe(0);
    expect(await p.evaluate(() => window.LkFiles.objectUrls.length)).toBe(0);
  });

  it('cancel stops a download midway and saves nothing', async () => {
    const p = await fresh();
    let downloads = 0;
    p.on('download', () => downloads++);
    await mount(p, info({ size: 10 }), { stream: { chunks: [[1, 2, 3]], hang: true } });
    await p.getByTestId('download').click();
    const bar = p.getByTestId('download-progress');
    await expect.poll(() => bar.getByRole('progressbar').getAttribute('aria-valuenow')).toBe('30');
    expect(await p.getByTestId('download').isDisabled()).toBe(true);
    await bar.getByRole('button', { name: 'Cancel download of report.pdf' }).click();
    await expect.poll(() => bar.count()).toBe(0);
    expect(await p.getByTestId('file').textContent()).toContain('Download cancelled.');
    expect(downloads).toBe(0);
  });
});
