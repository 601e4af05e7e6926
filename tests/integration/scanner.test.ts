/**
 * The attachment scanner end to end (docs/operations.md "Scanning attachments", docs/threat-model.md
 * "The scanner"): a real relay and key service, the relay's signed webhooks delivered to the
 * scanner service (apps/scanner), a real clamd with the test's own signature database
 * (_clamd.ts), and clients of a visitor and an agent. The visitor sends an infected and a clean
 * file; the scanner joins the contact as role `scanner`, judges both with clamd and posts signed
 * verdicts; the agent's client (scanning on) sees `infected` with the signature's name and
 * `clean`, opens only the clean one, and nothing of the files reaches the scanner's logs. A
 * verdict sealed by a participant who is not a scanner is refused by readers and does not stop
 * the scanner from judging the file. clamd down: the scanner tries again, then says `error`. A
 * file over the size limit is `error` unread. A webhook that is not the relay's is refused.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import {
  LatchkeyClient,
  type ChatMessage,
  type ClientOptions,
  type FailedMessage,
  type ScanUpdate,
  type WebSocketConstructor,
} from '@latchkey/client';
import { openKeyService } from '@latchkey/keyd';
import { WEBHOOK_PATHS, WebhookSecretResponse, type Role } from '@latchkey/protocol';
import { startRelay } from '@latchkey/relay-app';
import { adminAuthorization, deriveAdminKey, mintToken } from '@latchkey/tokens';
import { signWebhook } from '@latchkey/webhooks';
import {
  SCANNER_EVENTS,
  startScanner,
  type Scanner,
  type ScannerLogEvent,
  type ScannerOptions,
} from '../../apps/scanner/src/index.ts';
import type * as TokenClaims from '../../packages/client/src/token-claims.ts';
import { freePort } from '../../packages/relay/test/_services.ts';
import { INFECTED_FILE, REPORTED_SIGNATURE, startClamd } from './_clamd.ts';
import { until } from './harness.ts';

type TokenClaimsModule = typeof TokenClaims;

/**
 * Modified clients: while `forged.on`, Mallory's believes its visitor token names a scanner, and
 * Rogue's believes its scanner token names a visitor (so each skips the SDK's own refusal).
 */
const forged = vi.hoisted(() => ({ on: false }));
vi.mock('../../packages/client/src/token-claims.ts', async (importOriginal) => {
  const real = await importOriginal<TokenClaimsModule>();
  return {
    tokenClaims: (token: string) => {
      const id = real.tokenClaims(token);
      if (!id || (id.participantId !== 'mallory' && id.participantId !== 'rogue')) return id;
      const role: Role = id.role;
      const pretend: Role = id.participantId === 'mallory' ? 'scanner' : 'visitor';
      return {
        contactId: id.contactId,
        participantId: id.participantId,
        get role(): Role {
          return forged.on ? pretend : role;
        },
      };
    },
  };
});

const clamd = await startClamd('scanner end to end', { streamMaxLength: 2 * 1024 * 1024 });
afterAll(() => clamd?.close());

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const CLEAN_FILE = new TextEncoder().encode('Order 1234: two blue mugs, shipped on Monday.\n');
/** A file name that must never reach the scanner's logs. */
const SECRET_NAME = 'payroll-of-alice-confidential.pdf';

async function readAll(s: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(s).arrayBuffer());
}

interface Setup {
  client(
    contact: string,
    participant: string,
    role: Role,
    opts?: Partial<ClientOptions>,
  ): Promise<LatchkeyClient>;
  /** Registers the relay's webhook endpoint and starts the scanner behind it. */
  startScanner(over?: Partial<ScannerOptions>): Promise<Scanner>;
  logs: ScannerLogEvent[];
  scannerUrl(): string;
}

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function setup(): Promise<Setup> {
  const dir = await mkdtemp(join(tmpdir(), 'latchkey-scanner-'));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const keys = await openKeyService({
    dataDir: dir,
    host: '127.0.0.1',
    port: 0,
    apiSecret: secret,
    masterKey: crypto.getRandomValues(new Uint8Array(32)),
  });
  cleanup.push(() => keys.close());
  const relay = await startRelay({
    dataDir: dir,
    host: '127.0.0.1',
    port: 0,
    apiSecret: secret,
    // The scanner listens on loopback, which webhook delivery refuses unless allowed.
    webhookAllowlist: ['127.0.0.1'],
  });
  cleanup.push(() => relay.close());
  const logs: ScannerLogEvent[] = [];
  let url = '';
  return {
    logs,
    scannerUrl: () => url,
    async client(contact, participant, role, opts = {}) {
      const c = await LatchkeyClient.connect({
        relayUrl: relay.url,
        keysUrl: keys.url,
        token: await mintToken(secret, {
          contactId: contact,
          participantId: participant,
          role,
          ttlSeconds: 600,
        }),
        WebSocket: WebSocket as unknown as WebSocketConstructor,
        backoff: { minMs: 50, maxMs: 400 },
        ...opts,
      });
      cleanup.push(() => c.close());
      return c;
    },
    async startScanner(over = {}) {
      // The endpoint is added first (its secret is shown once), on the port the scanner takes.
      const port = await freePort();
      const res = await fetch(`${relay.url.replace(/^ws/, 'http')}${WEBHOOK_PATHS.endpoints}`, {
        method: 'POST',
        headers: {
          authorization: adminAuthorization(deriveAdminKey(secret)),
          'content-type': 'application/json',
        },
        body: JSON.stringify({
          url: `http://127.0.0.1:${port}/webhooks`,
          events: [...SCANNER_EVENTS],
        }),
      });
      expect(res.status).toBe(201);
      const added = WebhookSecretResponse.parse(await res.json());
      const scanner = await startScanner({
        relayUrl: relay.url,
        keysUrl: keys.url,
        tokenKey: secret,
        webhookSecrets: [added.secret],
        clamd: { path: clamd!.socket },
        streamMaxLength: clamd!.streamMaxLength,
        port,
        retryBaseMs: 50,
        log: (e) => logs.push(e),
        client: { backoff: { minMs: 50, maxMs: 400 } },
        ...over,
      });
      url = scanner.url;
      cleanup.push(() => scanner.close());
      return scanner;
    },
  };
}

/** The agent's view: its messages, refused messages and scan updates. */
function watch(c: LatchkeyClient): {
  got: ChatMessage[];
  refused: FailedMessage[];
  scans: ScanUpdate[];
} {
  const v = { got: [] as ChatMessage[], refused: [] as FailedMessage[], scans: [] as ScanUpdate[] };
  c.on('message', (m) => v.got.push(m));
  c.on('failed', (m) => v.refused.push(m));
  c.on('scan', (u) => v.scans.push(u));
  return v;
}

describe.skipIf(!clamd)('the scanner service with clamd', () => {
  it('judges an infected and a clean file; the agent sees infected (with the signature) and clean', async () => {
    const s = await setup();
    const scanner = await s.startScanner();
    const contact = 'c-scan-1';
    const visitor = await s.client(contact, 'v1', 'visitor');
    const agent = await s.client(contact, 'a1', 'agent', { scanning: true });
    const view = watch(agent);

    const bad = await visitor.sendFile(
      new File([INFECTED_FILE], SECRET_NAME, { type: 'application/pdf' }),
    );
    const good = await visitor.sendFile(
      new File([CLEAN_FILE], 'order.txt', { type: 'text/plain' }),
      {
        text: 'my order',
      },
    );
    await until(() => view.scans.length >= 2, 20_000, 'two verdicts');
    expect(view.scans).toEqual(
      expect.arrayContaining([
        { seq: bad.seq, msgId: bad.msgId, scan: 'infected', signature: REPORTED_SIGNATURE },
        { seq: good.seq, msgId: good.msgId, scan: 'clean' },
      ]),
    );
    expect(view.scans).toHaveLength(2);
    // Clean opens with its exact bytes; infected stays blocked.
    expect(await readAll(agent.openFile(good.seq))).toEqual(CLEAN_FILE);
    expect(() => agent.openFile(bad.seq)).toThrow(expect.objectContaining({ code: 'FORBIDDEN' }));

    // The verdicts are messages of the participant `scanner`, role scanner, naming the engine.
    const history = await agent.history(0);
    const verdicts = history.flatMap((e) => (e.ok && e.verdict ? [e] : []));
    expect(verdicts.map((e) => [e.senderId, e.senderRole, e.verdict?.verdict])).toEqual(
      expect.arrayContaining([
        ['scanner', 'scanner', 'infected'],
        ['scanner', 'scanner', 'clean'],
      ]),
    );
    expect(verdicts.every((e) => e.verdict?.engine?.startsWith('ClamAV'))).toBe(true);
    expect(verdicts.find((e) => e.verdict?.ref === bad.msgId)?.verdict?.sha256).toBe(
      sha256(INFECTED_FILE),
    );

    // Its logs name ids and codes only: no file name, no content, no caption.
    const text = JSON.stringify(s.logs);
    expect(text).not.toContain(SECRET_NAME);
    expect(text).not.toContain('order.txt');
    expect(text).not.toContain('my order');
    expect(text).not.toContain('Order 1234');
    expect(s.logs).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ event: 'scan.verdict', msgId: bad.msgId, verdict: 'infected' }),
        expect.objectContaining({ event: 'scan.verdict', msgId: good.msgId, code: 'CLEAN' }),
      ]),
    );
    expect(scanner.contacts()).toEqual([contact]);
  });

  it('refuses a verdict sealed by a non-scanner, and judges the file anyway', async () => {
    const s = await setup();
    const contact = 'c-scan-forged';
    const mallory = await s.client(contact, 'mallory', 'visitor');
    const agent = await s.client(contact, 'a1', 'agent', { scanning: true });
    const view = watch(agent);

    // Before any scanner runs, Mallory sends the infected file and seals a `clean` verdict on
    // it under its visitor certificate (its modified client skips the SDK's refusal).
    const bad = await mallory.sendFile(
      new File([INFECTED_FILE], 'harmless.pdf', { type: 'application/pdf' }),
    );
    forged.on = true;
    const fake = await mallory
      .sendVerdict({ ref: bad.msgId, sha256: sha256(INFECTED_FILE), verdict: 'clean' })
      .finally(() => {
        forged.on = false;
      });
    await until(() => view.refused.some((m) => m.seq === fake.seq), 10_000, 'the forged verdict');
    expect(view.refused.find((m) => m.seq === fake.seq)?.code).toBe('FORBIDDEN');
    expect(view.scans).toHaveLength(0);
    expect(() => agent.openFile(bad.seq)).toThrow(expect.objectContaining({ code: 'FORBIDDEN' }));

    // The scanner starts; the next message makes the relay tell it about the contact. It reads
    // the whole history, takes the forged verdict for nothing, and judges the file.
    await s.startScanner();
    await mallory.send('hello?');
    await until(() => view.scans.length >= 1, 20_000, "the scanner's verdict");
    expect(view.scans).toEqual([
      { seq: bad.seq, msgId: bad.msgId, scan: 'infected', signature: REPORTED_SIGNATURE },
    ]);
    expect(() => agent.openFile(bad.seq)).toThrow(expect.objectContaining({ code: 'FORBIDDEN' }));
  });

  it('refuses text sent under a scanner certificate (the relay stores it, readers do not show it)', async () => {
    const s = await setup();
    const contact = 'c-scan-text';
    const agent = await s.client(contact, 'a1', 'agent', { scanning: true });
    const view = watch(agent);
    const rogue = await s.client(contact, 'rogue', 'scanner');
    forged.on = true;
    const sent = await rogue.send('Your file is safe, click here').finally(() => {
      forged.on = false;
    });
    await until(() => view.refused.some((m) => m.seq === sent.seq), 10_000, 'the text');
    expect(view.refused.find((m) => m.seq === sent.seq)?.code).toBe('FORBIDDEN');
    expect(view.got.some((m) => m.text.includes('click here'))).toBe(false);
  });

  it('says error when clamd stays unreachable (after retries), and for a file over the limit', async () => {
    const s = await setup();
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
    const s = await setup();
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
});
