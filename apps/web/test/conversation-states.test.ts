/**
 * The conversation view's rendering contract in Debian's Chromium, driven by a fake client
 * (test/fixtures/fake-conversation.ts, bundled with Vite like the real scripts):
 * - bidi: message text and sender names are isolated (`dir="auto"`, `unicode-bidi: isolate`,
 *   `<bdi>`), and explicit directional controls (U+202A..U+202E, U+2066..U+2069) show as visible
 *   marks instead of acting, so a U+202E reorders neither the message nor the UI around it;
 * - the fingerprint badge follows the epoch (`epoch` event, or a message of a newer epoch);
 * - integrity failures (`failed` with code INTEGRITY) show as `data-state="suspect"` with
 *   `data-integrity`, a visible warning, suspect text apart from normal text, one `gap` element
 *   before a MISSING message; a REPLAYED duplicate never shows as a second normal message.
 * The real adversarial end-to-end tests (hostile relay) live in tests/integration.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WEB_ROOT } from '../src/build.ts';
import { ARGS, CHROMIUM, haveChromium, mustRun } from './_browser.ts';
import { buildFixture } from './_harness.ts';

if (!haveChromium && !mustRun)
  console.log(`skipping conversation state tests: ${CHROMIUM} is missing`);
if (!haveChromium && mustRun) {
  describe('conversation state tests under CI', () => {
    it('needs Debian chromium', () => {
      expect.fail(`${CHROMIUM} is missing and CI=true: browser tests must not skip`);
    });
  });
}

declare global {
  interface Window {
    LkHarness: { mount(el: HTMLElement): Promise<unknown> };
    lk: {
      emit(event: string, value: unknown): void;
      current: { epoch: number; fingerprint: string };
    };
  }
}

const FP0 = '0000 0000 0000 0000 0000 0000 0000 0000';
const FP1 = '1111 1111 1111 1111 1111 1111 1111 1111';
const FP2 = '2222 2222 2222 2222 2222 2222 2222 2222';

function message(
  seq: number,
  text: string,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    seq,
    msgId: `m${seq}`,
    senderId: 'v-1',
    senderRole: 'visitor',
    sentAt: 1_700_000_000_000 + seq * 1000,
    epoch: 0,
    text,
    own: false,
    ...extra,
  };
}

function integrity(
  seq: number,
  code: string,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return { seq, msgId: `m${seq}`, senderId: 'v-1', code: 'INTEGRITY', integrity: code, ...extra };
}

describe.runIf(haveChromium)('conversation states in Chromium', () => {
  let dir: string;
  let harness: string;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'latchkey-harness-'));
    harness = await buildFixture('fake-conversation', 'LkHarness', dir);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** A fresh page with one conversation, connected to a fake client (`window.lk`). */
  async function fresh(): Promise<Page> {
    await page?.close();
    page = await browser.newPage({ viewport: { width: 420, height: 800 } });
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.setContent(
      '<!doctype html><html lang="en"><body><div id="root" style="height:780px"></div></body></html>',
    );
    await page.addScriptTag({ content: harness });
    await page.evaluate(async () => {
      window.lk = (await window.LkHarness.mount(document.getElementById('root')!)) as Window['lk'];
    });
    return page;
  }

  const emit = (p: Page, event: string, value: unknown) =>
    p.evaluate(([e, v]) => window.lk.emit(e as string, v), [event, value] as const);

  it('isolates message text and sender names; a U+202E reorders neither the message nor the UI around it', async () => {
    const p = await fresh();
    await emit(p, 'message', message(1, 'refund \u202Eabc def'));
    await emit(p, 'message', message(2, 'next message'));
    await emit(p, 'message', message(3, 'مرحبا بك'));
    await p.locator('[data-testid=message][data-seq="3"]').waitFor();
    const layout = await p.evaluate(() => {
      const items = Array.from(document.querySelectorAll<HTMLElement>('[data-testid=message]'));
      /** x of each character of `needle` in the element's text, in logical order. */
      const xs = (el: Element, needle: string): number[] => {
        const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
        for (let n = walker.nextNode(); n; n = walker.nextNode()) {
          const i = (n.textContent ?? '').indexOf(needle);
          if (i < 0) continue;
          return [...needle].map((_, k) => {
            const r = document.createRange();
            r.setStart(n, i + k);
            r.setEnd(n, i + k + 1);
            return r.getBoundingClientRect().left;
          });
        }
        return [];
      };
      const text = (i: number) => items[i]!.querySelector('.lk-text')!;
      const sender = items[0]!.querySelector('.lk-sender')!;
      return {
        first: xs(text(0), 'abc def'),
        refund: xs(text(0), 'refund'),
        next: xs(text(1), 'next'),
        sender: xs(sender, 'v-1 (visitor)'),
        textDir: text(0).getAttribute('dir'),
        textBidi: getComputedStyle(text(0)).unicodeBidi,
        senderTag: sender.tagName,
        senderBidi: getComputedStyle(sender).unicodeBidi,
        arabicDirection: getComputedStyle(text(2)).direction,
        mark: text(0).querySelector('.lk-bidi-mark')?.textContent ?? null,
        markLabel: text(0).querySelector('.lk-bidi-mark')?.getAttribute('title') ?? null,
      };
    });
    const increasing = (v: number[]) => v.length > 1 && v.every((x, i) => i === 0 || x > v[i - 1]!);
    // The override does not act: the text after it keeps its logical order, shown with a mark.
    expect(layout.first, 'text after U+202E').toSatisfy(increasing);
    expect(layout.mark).toBe('[U+202E]');
    expect(layout.markLabel).toMatch(/right-to-left override/i);
    expect(layout.refund).toSatisfy(increasing);
    // Nothing around it moves: the next message and the sender label read left to right.
    expect(layout.next).toSatisfy(increasing);
    expect(layout.sender).toSatisfy(increasing);
    expect(layout.textDir).toBe('auto');
    expect(layout.textBidi).toBe('isolate');
    expect(layout.senderTag).toBe('BDI');
    expect(layout.senderBidi).toBe('isolate');
    // Right-to-left text still reads right to left (dir="auto" per message).
    expect(layout.arabicDirection).toBe('rtl');
    // The text says what was sent, the control written out (as `latchkey read` escapes it).
    expect(await p.locator('[data-seq="1"] .lk-text').textContent()).toBe('refund [U+202E]abc def');
  });

  it('the fingerprint badge follows the epoch: the epoch event, or a message of a newer epoch', async () => {
    const p = await fresh();
    const badge = p.getByTestId('e2e-fingerprint');
    await expect.poll(() => badge.getAttribute('data-fingerprint')).toBe(FP0);
    // A rotation: the client adopts epoch 1 and says so.
    await p.evaluate((fp) => {
      window.lk.current = { epoch: 1, fingerprint: fp };
      window.lk.emit('epoch', { epoch: 1, fingerprint: fp });
    }, FP1);
    await expect.poll(() => badge.getAttribute('data-fingerprint')).toBe(FP1);
    expect(await badge.getAttribute('data-epoch')).toBe('1');
    expect(await badge.locator('.lk-fp').textContent()).toBe(FP1);
    // A message of a newer epoch than the badge shows refreshes it from the client.
    await p.evaluate((fp) => {
      window.lk.current = { epoch: 2, fingerprint: fp };
    }, FP2);
    await emit(p, 'message', message(1, 'after the rotation', { epoch: 2 }));
    await expect.poll(() => badge.getAttribute('data-fingerprint')).toBe(FP2);
    expect(await badge.getAttribute('data-epoch')).toBe('2');
    // An older epoch never takes the badge back.
    await emit(p, 'epoch', { epoch: 1, fingerprint: FP1 });
    await emit(p, 'message', message(2, 'late, old epoch', { epoch: 1 }));
    expect(await badge.getAttribute('data-fingerprint')).toBe(FP2);
  });

  it('integrity failures show as suspect with their code, a warning, and one gap before a MISSING message', async () => {
    const p = await fresh();
    await emit(p, 'message', message(1, 'please refund'));
    await emit(
      p,
      'failed',
      integrity(5, 'MISSING', { missing: 2, text: 'all good then', sentAt: 1_700_000_005_000 }),
    );
    await emit(p, 'failed', integrity(6, 'REORDERED', { text: 'do not refund' }));
    await emit(p, 'failed', integrity(7, 'FORKED'));
    await emit(p, 'failed', integrity(8, 'STALE_EPOCH', { text: 'stale' }));
    await emit(p, 'failed', integrity(9, 'SENDER_REMOVED', { text: 'forged after removal' }));
    await emit(p, 'failed', integrity(10, 'CLOCK', { text: 'from the future' }));
    await emit(p, 'failed', { seq: 11, msgId: 'm11', senderId: 'v-1', code: 'DECRYPT_FAILED' });
    // A message that arrives late with a lower seq goes before the gap, not between gap and message.
    await emit(p, 'message', message(4, 'arrived late'));
    // The same failure again (a reconnect replays history): still one element, one gap.
    await emit(p, 'failed', integrity(5, 'MISSING', { missing: 2, text: 'all good then' }));
    await p.locator('[data-testid=message][data-seq="4"]').waitFor();

    const states = await p.locator('[data-testid=message]').evaluateAll((els) =>
      els.map((e) => {
        const h = e as HTMLElement;
        return [h.dataset.seq, h.dataset.state, h.dataset.integrity ?? null];
      }),
    );
    expect(states).toEqual([
      ['1', 'delivered', null],
      ['4', 'delivered', null],
      ['5', 'suspect', 'MISSING'],
      ['6', 'suspect', 'REORDERED'],
      ['7', 'suspect', 'FORKED'],
      ['8', 'suspect', 'STALE_EPOCH'],
      ['9', 'suspect', 'SENDER_REMOVED'],
      ['10', 'suspect', 'CLOCK'],
      ['11', 'undecryptable', null],
    ]);
    // Exactly one gap, right before the MISSING message, saying how many.
    const gaps = p.getByTestId('gap');
    expect(await gaps.count()).toBe(1);
    expect(await gaps.textContent()).toContain('2 messages missing');
    const order = await p
      .locator('.lk-messages > li')
      .evaluateAll((els) =>
        els.map(
          (e) => (e as HTMLElement).dataset.testid + ':' + ((e as HTMLElement).dataset.seq ?? ''),
        ),
      );
    expect(order.slice(0, 4)).toEqual(['message:1', 'message:4', 'gap:', 'message:5']);
    // Visible, accessible warnings; suspect text only inside its marked block, never as normal text.
    const m6 = p.locator('[data-testid=message][data-seq="6"]');
    await expect
      .poll(() => m6.getByText('This message failed an integrity check: reordered').isVisible())
      .toBe(true);
    expect(await m6.getAttribute('aria-describedby')).toBeTruthy();
    expect(await m6.locator('.lk-suspect-text').textContent()).toContain('do not refund');
    const normal = await p.locator('[data-testid=message] .lk-text').allTextContents();
    expect(normal).toEqual(['please refund', 'arrived late', '⚠ Could not decrypt this message.']);
    for (const [seq, word] of [
      ['5', 'are missing'],
      ['7', 'forked'],
      ['8', 'outdated key'],
      ['9', 'removed'],
      ['10', 'clock'],
    ] as const) {
      expect(
        await p.locator(`[data-testid=message][data-seq="${seq}"] .lk-warning`).textContent(),
        seq,
      ).toContain(word);
    }
    expect(pageErrors).toEqual([]);
    await mkdir(join(WEB_ROOT, 'test-output'), { recursive: true });
    await p.screenshot({
      path: join(WEB_ROOT, 'test-output', 'integrity-states.png'),
      fullPage: true,
    });
  });

  it('a REPLAYED duplicate never shows as a second normal message', async () => {
    const p = await fresh();
    await emit(p, 'message', message(1, 'refund 10 EUR'));
    // The relay plays the same envelope again at a new seq: the client reports it as REPLAYED.
    await emit(p, 'failed', integrity(2, 'REPLAYED', { msgId: 'm1' }));
    await p.locator('[data-testid=message][data-seq="2"]').waitFor();
    expect(await p.locator('[data-testid=message] .lk-text').allTextContents()).toEqual([
      'refund 10 EUR',
    ]);
    const dup = p.locator('[data-testid=message][data-seq="2"]');
    expect(await dup.getAttribute('data-state')).toBe('suspect');
    expect(await dup.getAttribute('data-integrity')).toBe('REPLAYED');
    expect(
      await dup.getByText('This message failed an integrity check: replayed').isVisible(),
    ).toBe(true);
    expect(await dup.textContent()).not.toContain('refund 10 EUR');
    expect(await p.getByTestId('gap').count()).toBe(0);
    expect(await p.locator('[data-testid=message][data-state=delivered]').count()).toBe(1);
    expect(pageErrors).toEqual([]);
  });
});
