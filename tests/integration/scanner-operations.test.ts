/**
 * The attachment scanner's operations (docs/operations.md "Scanning attachments"), with a real
 * relay, key service and clamd (_scanner-stack.ts, _clamd.ts): clamd down, the scanner tries
 * again and then says `error`; a file over the size limit is `error` unread; a webhook not signed
 * with its endpoint's secret is refused; an idle contact's connection is let go; a scanner that
 * registers itself with the relay (`latchkey start --scanner`) works, and again after a restart
 * at the same URL, with one endpoint whose secret was rotated.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { WEBHOOK_PATHS } from '@latchkey/protocol';
import { signWebhook } from '@latchkey/webhooks';
import { ATTACHED_DESCRIPTION, startAttachedScanner } from '../../apps/scanner/src/index.ts';
import { freePort } from '../../packages/relay/test/_services.ts';
import { INFECTED_FILE, startClamd } from './_clamd.ts';
import { CLEAN_FILE, setup, watch, type Cleanup } from './_scanner-stack.ts';
import { until } from './harness.ts';

const clamd = await startClamd('scanner operations', { streamMaxLength: 2 * 1024 * 1024 });
afterAll(() => clamd?.close());

const cleanup: Cleanup = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

describe.skipIf(!clamd)('the scanner service in operation', () => {
  it('says error when clamd stays unreachable (after retries), and for a file over the limit', async () => {
    const s = await setup(clamd!, cleanup);
    await s.startScanner({ retries: 2, retryBaseMs: 20, maxFileBytes: 1024 });
    const contact = 'c-scan-down';
    const visitor = await s.client(contact, 'v1', 'visitor');
    const agent = await s.client(contact, 'a1', 'agent', { scanning: true });
    const view = watch(agent);

    const big = await visitor.sendFile(new File([new Uint8Array(4096).fill(7)], 'big.bin'));
    await until(() => view.scans.length >= 1, 20_000, 'the size verdict');
    expect(view.scans[0]).toEqual({ seq: big.seq, msgId: big.msgId, scan: 'error' });
    expect(s.logs).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ event: 'scan.verdict', code: 'TOO_LARGE' }),
      ]),
    );

    await clamd!.stop();
    try {
      const f = await visitor.sendFile(new File([CLEAN_FILE], 'order.txt'));
      await until(() => view.scans.length >= 2, 20_000, 'the error verdict');
      expect(view.scans[1]).toEqual({ seq: f.seq, msgId: f.msgId, scan: 'error' });
      expect(s.logs.filter((e) => e.event === 'scan.retry' && e.msgId === f.msgId)).toHaveLength(2);
      expect(s.logs).toEqual(
        expect.arrayContaining([
          expect.objectContaining({
            event: 'scan.verdict',
            msgId: f.msgId,
            code: 'CLAMD_UNREACHABLE',
          }),
        ]),
      );
      expect(() => agent.openFile(f.seq)).toThrow(expect.objectContaining({ code: 'FORBIDDEN' }));
    } finally {
      await clamd!.start();
    }
  });

  it('refuses webhooks not signed with its secret, and lets an idle contact go', async () => {
    const s = await setup(clamd!, cleanup);
    const scanner = await s.startScanner({ idleTimeoutMs: 300 });
    const body = JSON.stringify({
      type: 'message.stored',
      timestamp: new Date().toISOString(),
      sequence: 1,
      data: { contactId: 'c-x', seq: 1, senderId: 'v1', size: 100, time: Date.now() },
    });
    const headers = signWebhook(
      [`whsec_${Buffer.alloc(32, 1).toString('base64')}`],
      'evt_x',
      Math.floor(Date.now() / 1000),
      body,
    );
    const res = await fetch(s.scannerUrl(), { method: 'POST', headers, body });
    expect(res.status).toBe(401);
    expect(scanner.contacts()).toEqual([]);
    expect(s.logs).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ event: 'webhook.refused', code: 'BAD_SIGNATURE' }),
      ]),
    );

    const contact = 'c-scan-idle';
    const visitor = await s.client(contact, 'v1', 'visitor');
    await visitor.send('hi');
    await until(() => scanner.contacts().includes(contact), 10_000, 'the scanner joins');
    await until(() => scanner.contacts().length === 0, 10_000, 'the idle contact closed');
    expect(s.logs).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ event: 'contact.closed', contactId: contact, code: 'idle' }),
      ]),
    );
  });

  it('registers itself with the relay (latchkey start --scanner), and again after a restart', async () => {
    const s = await setup(clamd!, cleanup);
    const port = await freePort();
    const first = await startAttachedScanner({ ...s.base, port, relayAdmin: s.relayAdmin });
    const contact = 'c-scan-attached';
    const visitor = await s.client(contact, 'v1', 'visitor');
    const agent = await s.client(contact, 'a1', 'agent', { scanning: true });
    const view = watch(agent);
    const bad = await visitor.sendFile(new File([INFECTED_FILE], 'a.bin'));
    await until(() => view.scans.length >= 1, 20_000, 'the first verdict');
    expect(view.scans[0]).toMatchObject({ msgId: bad.msgId, scan: 'infected' });

    // A restart at the same URL rotates the endpoint's secret instead of adding another.
    await first.close();
    const second = await startAttachedScanner({
      ...s.base,
      port,
      relayAdmin: s.relayAdmin,
      idleTimeoutMs: 500,
    });
    cleanup.push(() => second.close());
    const good = await visitor.sendFile(new File([CLEAN_FILE], 'b.txt'));
    await until(() => view.scans.length >= 2, 20_000, 'the second verdict');
    expect(view.scans[1]).toMatchObject({ msgId: good.msgId, scan: 'clean' });
    // The restarted scanner read the first verdict in the history and did not judge that file
    // again: once its contact went idle (nothing left to judge), one verdict per file.
    await until(() => second.contacts().length === 0, 10_000, 'the contact idle');
    const verdicts = s.logs.filter((e) => e.event === 'scan.verdict').map((e) => e.msgId);
    expect(verdicts.sort()).toEqual([bad.msgId, good.msgId].sort());
    expect(view.scans).toHaveLength(2);
    const res = await fetch(
      `${s.relayAdmin.url.replace(/^ws/, 'http')}${WEBHOOK_PATHS.endpoints}`,
      {
        headers: { authorization: s.relayAdmin.authorization },
      },
    );
    const { endpoints } = (await res.json()) as {
      endpoints: { url: string; description: string }[];
    };
    expect(endpoints.filter((e) => e.description === ATTACHED_DESCRIPTION)).toEqual([
      expect.objectContaining({ url: second.url }),
    ]);
  });
});
