/**
 * A process SIGKILLed in the middle of a call on the shared PostgreSQL outbox (docs/webhooks.md
 * "Several processes", "Exactly once, and the one exception"): the receiver got the request,
 * the process died before recording the outcome; after the lease another process sends it again
 * with the same `webhook-id` and `sequence` (the receiver dedupes on it), records it once, and
 * the queue goes on in order with nothing else sent twice.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgWebhookOutbox, WebhookService } from '../src/index.ts';
import { startCollector, type Collector } from './_collector.ts';
import { testPostgres, type TestPostgres } from './_postgres.ts';

const server: TestPostgres | null = testPostgres('PostgreSQL webhook outbox crash test');
const here = dirname(fileURLToPath(import.meta.url));
const LEASE_MS = 3_000;
const TIMEOUT_MS = 1_000;

let rx: Collector;
beforeAll(async () => {
  rx = await startCollector(['/held']);
});
afterAll(() => rx.close());

/** Resolves with the first line of the child's stdout matching `re`. */
function line(child: ChildProcess, re: RegExp): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (c: Buffer): void => {
      out += c.toString();
      const m = re.exec(out);
      if (m) {
        child.stdout?.off('data', onData);
        resolve(m);
      }
    };
    child.stdout?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`worker exited ${code}: ${out}`)));
  });
}

describe.runIf(server !== null)('a process SIGKILLed mid-call on the shared outbox', () => {
  it('its delivery is sent again after the lease with the same id, recorded once', async () => {
    const url = await (server as TestPostgres).newDatabase();
    const key = randomBytes(32);
    const setup = await PgWebhookOutbox.open({ url, secretKey: key, leaseMs: LEASE_MS });
    const { endpoint } = await setup.addEndpoint({ url: `${rx.base}/held` }, Date.now());
    const first = await setup.emit('contact.opened', { contactId: 'c', time: 1 }, Date.now());
    await setup.close();

    const worker = spawn(
      process.execPath,
      ['--import', 'tsx', join(here, 'fixtures', 'pg-worker.ts')],
      {
        cwd: join(here, '..'),
        env: {
          ...process.env,
          PG_URL: url,
          OUTBOX_KEY: key.toString('hex'),
          LEASE_MS: String(LEASE_MS),
          TIMEOUT_MS: String(TIMEOUT_MS),
        },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    const claimed = line(worker, /claimed (\S+)\n/);
    const before = rx.calls.length;
    await claimed;
    await rx.waitFor(before + 1);
    const killedAt = Date.now();
    const exited = new Promise((r) => worker.once('exit', r));
    worker.kill('SIGKILL');
    await exited;

    const other = new WebhookService({
      outbox: { url, secretKey: key, leaseMs: LEASE_MS, pollMs: 50 },
      delivery: { allowlist: ['127.0.0.1'], timeoutMs: TIMEOUT_MS },
    });
    try {
      await rx.waitFor(before + 2);
      const calls = rx.calls.slice(before);
      // The receiver saw the call the dead process made, then the same event again.
      expect(calls.map((c) => [c.id, c.sequence])).toEqual([
        [first, 1],
        [first, 1],
      ]);
      expect(calls[1]?.at).toBeGreaterThan(killedAt);
      const second = await other.emitAsync('contact.opened', { contactId: 'c', time: 2 });
      await rx.waitFor(before + 3);
      await other.idle();
      const info = await other.outbox.endpoint(endpoint.id, Date.now());
      expect(info?.status).toMatchObject({ delivered: 2, pending: 0, dead: 0 });
      expect(rx.calls.slice(before).map((c) => [c.id, c.sequence])).toEqual([
        [first, 1],
        [first, 1],
        [second, 2],
      ]);
    } finally {
      await other.close();
    }
  });
});
