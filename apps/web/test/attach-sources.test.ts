/**
 * Attaching and transferring in Debian's Chromium, on a bare page (test/fixtures/file-harness.ts):
 * the Attach button, a drop and a paste (not a paste that carries text) hand over their files;
 * the progress bar exposes its value and Cancel aborts; a conversation's attachments with a fake
 * client: a client that did not read a file's message reads the history from it before opening
 * it, and refused uploads (TOO_LARGE, QUOTA_EXCEEDED, unreachable) say so plainly.
 */
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { CHROMIUM, haveChromium, mustRun } from './_browser.ts';
import { fileHarnessPages } from './_file-page.ts';

if (!haveChromium && !mustRun) console.log(`skipping attach tests: ${CHROMIUM} is missing`);
if (!haveChromium && mustRun) {
  describe('attach tests under CI', () => {
    it('needs Debian chromium', () => {
      expect.fail(`${CHROMIUM} is missing and CI=true: browser tests must not skip`);
    });
  });
}

describe.runIf(haveChromium)('attaching and transfers in Chromium', () => {
  const { fresh } = fileHarnessPages();

  it('the progress bar exposes its value; Cancel aborts its signal', async () => {
    const p = await fresh();
    const state = await p.evaluate(() => {
      const bar = window.LkFiles.progress();
      bar.update(512 * 1024, 2 * 1024 * 1024);
      const el = document.querySelector('[data-testid=upload-progress] [role=progressbar]')!;
      const before = bar.signal.aborted;
      document.querySelector<HTMLButtonElement>('[data-testid=upload-progress] button')!.click();
      return {
        now: el.getAttribute('aria-valuenow'),
        text: el.getAttribute('aria-valuetext'),
        name: el.getAttribute('aria-label'),
        before,
        after: bar.signal.aborted,
      };
    });
    expect(state).toEqual({
      now: '25',
      text: '512 KB of 2.0 MB',
      name: 'Uploading a.bin',
      before: false,
      after: true,
    });
  });

  it('takes files from the Attach button, a drop and a paste (not a text paste)', async () => {
    const p = await fresh();
    await p.evaluate(() => window.LkFiles.sources());
    const attach = p.getByRole('button', { name: 'Attach a file' });
    expect(await attach.getAttribute('data-testid')).toBe('attach');
    const [chooser] = await Promise.all([p.waitForEvent('filechooser'), attach.click()]);
    expect(chooser.isMultiple()).toBe(true);
    await chooser.setFiles({ name: 'a.txt', mimeType: 'text/plain', buffer: Buffer.from('hello') });
    const dt = await p.evaluateHandle(() => {
      const d = new DataTransfer();
      d.items.add(new File(['png'], 'dropped.png', { type: 'image/png' }));
      return d;
    });
    const zone = p.locator('#zone');
    await zone.dispatchEvent('dragenter', { dataTransfer: dt });
    expect(await zone.getAttribute('data-drop')).toBe('active');
    await zone.dispatchEvent('drop', { dataTransfer: dt });
    expect(await zone.getAttribute('data-drop')).toBeNull();
    const pasted = await p.evaluate(() => {
      const paste = (withText: boolean): boolean => {
        const d = new DataTransfer();
        d.items.add(new File(['img'], 'image.png', { type: 'image/png' }));
        if (withText) d.setData('text/plain', 'copied text');
        const ev = new ClipboardEvent('paste', {
          clipboardData: d,
          bubbles: true,
          cancelable: true,
        });
        document.getElementById('zone')!.dispatchEvent(ev);
        return ev.defaultPrevented;
      };
      return [paste(false), paste(true)];
    });
    expect(pasted).toEqual([true, false]);
    expect(await p.evaluate(() => window.LkFiles.taken)).toEqual([
      [{ name: 'a.txt', type: 'text/plain', size: 5 }],
      [{ name: 'dropped.png', type: 'image/png', size: 3 }],
      [{ name: 'image.png', type: 'image/png', size: 3 }],
    ]);
  });

  it('a client that did not read the file message reads the history from it, then downloads', async () => {
    const p = await fresh();
    await p.evaluate(() => window.LkFiles.conversationFiles());
    expect(await p.locator('#root .lk-text').textContent()).toBe('the caption');
    const [download] = await Promise.all([
      p.waitForEvent('download'),
      p.getByTestId('download').click(),
    ]);
    expect([...(await readFile((await download.path())!))]).toEqual([9, 8, 7]);
    expect(await p.evaluate(() => window.LkFiles.calls)).toEqual([
      'openFile 7',
      'history 6',
      'openFile 7',
    ]);
  });

  for (const [code, words] of [
    ['TOO_LARGE', 'the file is larger than this chat allows'],
    ['QUOTA_EXCEEDED', 'this conversation has no room left for files'],
    ['UNAVAILABLE', 'the service is unreachable'],
  ] as const) {
    it(`an upload refused with ${code} says so plainly`, async () => {
      const p = await fresh();
      await p.evaluate((c) => window.LkFiles.conversationFiles(c), code);
      const [chooser] = await Promise.all([
        p.waitForEvent('filechooser'),
        p.getByTestId('attach').click(),
      ]);
      await chooser.setFiles({
        name: 'x.bin',
        mimeType: 'application/octet-stream',
        buffer: Buffer.from('x'),
      });
      const error = p.getByTestId('upload-error');
      await error.waitFor();
      expect(await error.getAttribute('role')).toBe('alert');
      expect(await error.textContent()).toContain(`x.bin: Upload failed: ${words}`);
      expect(await p.getByTestId('upload-progress').count()).toBe(0);
      await error.getByRole('button', { name: 'Dismiss this error' }).click();
      expect(await error.count()).toBe(0);
    });
  }
});
