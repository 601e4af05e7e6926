/**
 * The syslog sink's delivery rule (access-syslog.ts): a record counts once written and the
 * connection stayed up for `settleMs`; a connection that drops before that has the record sent
 * again on the next one, and the durable cursor never passes an unsettled record. Collector: a
 * Node TLS server on loopback that can cut a connection right after a record arrives.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import {
  KeyAccessLog,
  parseAccessSyslog,
  splitOctetCounted,
  verifyAccessStream,
  type ReceivedAccessRecord,
} from '@latchkey/keys';
import { makePki } from '../../../tests/integration/certs.ts';
import { until } from '../../../tests/integration/harness.ts';
import { AccessLogTailer } from '../src/access-stream.ts';
import { SyslogAccessSink } from '../src/access-syslog.ts';

const KEY = new Uint8Array(32).fill(3);
const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

interface Collector {
  port: number;
  ca: string;
  /** Records per connection, in arrival order. */
  connections: ReceivedAccessRecord[][];
  /** Cut the connection right after the next record arrives (a collector crash). */
  cutAfterNext(): void;
}

async function startCollector(dir: string): Promise<Collector> {
  const pki = makePki(dir);
  const cert = pki.issue('collector', { san: 'IP:127.0.0.1', days: 2 });
  let cut = false;
  const connections: ReceivedAccessRecord[][] = [];
  const sockets = new Set<TLSSocket>();
  const server: Server = createServer(
    { cert: readFileSync(cert.certFile), key: readFileSync(cert.keyFile) },
    (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      const got: ReceivedAccessRecord[] = [];
      connections.push(got);
      let buf: Buffer = Buffer.alloc(0);
      socket.on('data', (d: Buffer) => {
        const { messages, rest } = splitOctetCounted(Buffer.concat([buf, d]));
        buf = rest;
        for (const m of messages) {
          const r = parseAccessSyslog(m);
          if (r) got.push(r);
        }
        if (cut && messages.length > 0) {
          cut = false;
          socket.destroy();
        }
      });
      socket.on('error', () => undefined);
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return {
    port: (server.address() as AddressInfo).port,
    ca: readFileSync(pki.caFile, 'utf8'),
    connections,
    cutAfterNext: () => {
      cut = true;
    },
  };
}

describe('syslog sink delivery', () => {
  it('a record cut off before it settled goes again; the cursor waits for it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'latchkey-syslog-sink-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const collector = await startCollector(dir);
    const log = new KeyAccessLog({ path: join(dir, 'keys.db'), key: KEY });
    cleanup.push(() => log.close());
    const append = (p: string): void =>
      void log.append({
        contactId: 'c1',
        epoch: 0,
        participantId: p,
        time: Date.now(),
        outcome: 'granted',
      });
    append('p1');
    const reports: string[] = [];
    const tailer = new AccessLogTailer({
      log,
      sink: new SyslogAccessSink({
        url: `tls://127.0.0.1:${collector.port}`,
        ca: collector.ca,
        alg: log.algorithm,
        settleMs: 300,
        backoffMs: { min: 20, max: 100 },
        report: (l) => reports.push(l),
      }),
      pollMs: 60_000,
      report: (l) => reports.push(l),
    });
    cleanup.push(() => tailer.close());
    append('p2');
    await tailer.reached(2);
    expect(log.cursor('syslog')).toBe(2);

    collector.cutAfterNext();
    append('p3');
    await until(() => collector.connections.length >= 2, 10_000, 'a second connection');
    await tailer.reached(3);
    const all = collector.connections.flat();
    // Record 3 arrived on the first connection, was cut off before it settled, and came again.
    expect(collector.connections[0]?.map((r) => r.seq)).toEqual([1, 2, 3]);
    expect(collector.connections[1]?.map((r) => r.seq)).toEqual([3]);
    expect(verifyAccessStream(all, { key: KEY })).toMatchObject({
      ok: true,
      count: 3,
      duplicates: 1,
    });
    expect(reports.some((l) => l.includes('connection lost'))).toBe(true);
  });

  it('a restarted tailer goes on from the stored cursor, offering nothing twice that settled', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'latchkey-syslog-sink-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const collector = await startCollector(dir);
    const log = new KeyAccessLog({ path: join(dir, 'keys.db'), key: KEY });
    cleanup.push(() => log.close());
    for (const p of ['a', 'b', 'c'])
      log.append({ contactId: 'c2', epoch: 0, participantId: p, time: 1, outcome: 'denied' });
    const open = () =>
      new AccessLogTailer({
        log,
        sink: new SyslogAccessSink({
          url: `tls://127.0.0.1:${collector.port}`,
          ca: collector.ca,
          alg: log.algorithm,
          settleMs: 100,
        }),
        pollMs: 60_000,
      });
    const first = open();
    await first.reached(3);
    await first.close();
    log.append({ contactId: 'c2', epoch: 0, participantId: 'd', time: 2, outcome: 'denied' });
    const second = open();
    cleanup.push(() => second.close());
    await second.reached(4);
    expect(collector.connections.flat().map((r) => r.seq)).toEqual([1, 2, 3, 4]);
  });
});
