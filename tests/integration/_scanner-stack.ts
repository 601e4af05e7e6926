/**
 * The scanner tests' stack (scanner.test.ts, scanner-operations.test.ts): a real relay and key
 * service whose signed webhooks may reach loopback, clients minted for any role, and a scanner
 * started behind a webhook endpoint added through the relay's admin API, as an operator would
 * (docs/operations.md "Scanning attachments"), logging into an array the tests read.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { expect } from 'vitest';
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
import {
  SCANNER_EVENTS,
  startScanner,
  type RelayAdmin,
  type Scanner,
  type ScannerLogEvent,
  type ScannerOptions,
} from '../../apps/scanner/src/index.ts';
import { freePort } from '../../packages/relay/test/_services.ts';
import type { TestClamd } from './_clamd.ts';

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
export const CLEAN_FILE = new TextEncoder().encode(
  'Order 1234: two blue mugs, shipped on Monday.\n',
);
/** A file name that must never reach the scanner's logs. */
export const SECRET_NAME = 'payroll-of-alice-confidential.pdf';

export async function readAll(s: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(s).arrayBuffer());
}

export interface Setup {
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
  /** Options a scanner needs besides the webhook secret. */
  base: Omit<ScannerOptions, 'webhookSecrets'>;
  relayAdmin: RelayAdmin;
  /** The data directory of relay and key service (the relay's stored blobs are under it). */
  dir: string;
}

/** What a test undoes when it ends, last first. */
export type Cleanup = (() => Promise<void> | void)[];

/**
 * A relay (webhooks to loopback allowed) and a key service in a temporary directory, with the
 * scanner's options pointing at them and at `clamd`.
 */
export async function setup(clamd: TestClamd, cleanup: Cleanup): Promise<Setup> {
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
  const base: Omit<ScannerOptions, 'webhookSecrets'> = {
    relayUrl: relay.url,
    keysUrl: keys.url,
    tokenKey: secret,
    clamd: { path: clamd.socket },
    streamMaxLength: clamd.streamMaxLength,
    retryBaseMs: 50,
    log: (e) => logs.push(e),
    client: { backoff: { minMs: 50, maxMs: 400 } },
  };
  return {
    dir,
    logs,
    base,
    relayAdmin: { url: relay.url, authorization: adminAuthorization(deriveAdminKey(secret)) },
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
        ...base,
        webhookSecrets: [added.secret],
        port,
        ...over,
      });
      url = scanner.url;
      cleanup.push(() => scanner.close());
      return scanner;
    },
  };
}

/** The agent's view: its messages, refused messages and scan updates. */
export function watch(c: LatchkeyClient): {
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
