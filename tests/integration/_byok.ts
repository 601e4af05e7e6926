/**
 * Helpers of the bring-your-own-key tests: a relay and a key service with a chosen key manager
 * over a temp data directory, admin calls (key service first, then relay), raw key fetches, the
 * reference KMS in a child process, and a byte scan of database files.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import {
  KeyReceiver,
  LatchkeyClient,
  type ClientOptions,
  type WebSocketConstructor,
} from '@latchkey/client';
import { fromBase64Url, toBase64Url } from '@latchkey/crypto/codec';
import { openKeyService, type KeyManagerChoice, type OpenKeyServiceOptions } from '@latchkey/keyd';
import { startRelay } from '@latchkey/relay-app';
import type { ContactKeyResponse, Role } from '@latchkey/protocol';
import { adminAuthorization, deriveAdminKey, mintToken } from '@latchkey/tokens';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = join(ROOT, 'apps', 'cli', 'bin', 'latchkey.mjs');
export const KMS_MAIN = join(ROOT, 'apps', 'kms-example', 'src', 'main.ts');

export interface ByokStack {
  dir: string;
  secret: Uint8Array;
  masterKey: Uint8Array;
  relayUrl: string;
  keysUrl: string;
  token(contactId: string, participantId: string, role?: Role): Promise<string>;
  client(token: string, opts?: Partial<ClientOptions>): Promise<LatchkeyClient>;
  /** Admin action on the key service, then the relay; returns both answers. */
  admin(path: string, body?: unknown): Promise<{ keys: unknown; relay: unknown }>;
  /** POST /v1/contact-key without a delivery key: the content key in the clear (tests only). */
  rawKey(
    token: string,
    body?: Record<string, unknown>,
  ): Promise<{ status: number; json: Record<string, unknown> }>;
  sweepKeys(): Promise<string[]>;
  close(): Promise<void>;
}

export async function startByokStack(
  keyManager: KeyManagerChoice,
  extra: Partial<OpenKeyServiceOptions> = {},
): Promise<ByokStack> {
  const dir = await mkdtemp(join(tmpdir(), 'latchkey-byok-'));
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const masterKey = crypto.getRandomValues(new Uint8Array(32));
  const keys = await openKeyService({
    dataDir: dir,
    host: '127.0.0.1',
    port: 0,
    apiSecret: secret,
    masterKey: Uint8Array.from(masterKey),
    keyManager,
    ...extra,
  });
  const relay = await startRelay({ dataDir: dir, host: '127.0.0.1', port: 0, apiSecret: secret });
  const clients: LatchkeyClient[] = [];
  const authorization = adminAuthorization(deriveAdminKey(secret));
  const relayHttp = relay.url.replace(/^ws/, 'http');
  const post = async (base: string, path: string, body: unknown): Promise<unknown> => {
    const res = await fetch(`${base}${path}`, {
      method: 'POST',
      headers: { authorization, 'content-type': 'application/json' },
      body: JSON.stringify(body ?? {}),
    });
    const json = (await res.json()) as unknown;
    if (!res.ok) throw new Error(`${base}${path}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  };
  return {
    dir,
    secret,
    masterKey,
    relayUrl: relay.url,
    keysUrl: keys.url,
    token: (contactId, participantId, role = 'visitor') =>
      mintToken(secret, { contactId, participantId, role, ttlSeconds: 600 }),
    async client(token, opts = {}) {
      const c = await LatchkeyClient.connect({
        relayUrl: relay.url,
        keysUrl: keys.url,
        token,
        WebSocket: WebSocket as unknown as WebSocketConstructor,
        backoff: { minMs: 50, maxMs: 400 },
        ...opts,
      });
      clients.push(c);
      return c;
    },
    async admin(path, body = {}) {
      const k = await post(keys.url, path, body);
      return { keys: k, relay: await post(relayHttp, path, body) };
    },
    async rawKey(token, body = {}) {
      // Over plain HTTP keys come only sealed: ask as a client does and open it (as `key`).
      const claims = JSON.parse(
        Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8'),
      ) as { sub: string };
      const receiver = new KeyReceiver('x25519', claims.sub);
      const res = await fetch(`${keys.url}/v1/contact-key`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ ...body, delivery: receiver.request() }),
      });
      const json = (await res.json()) as Record<string, unknown>;
      if (res.ok && json.sealedKey !== undefined) {
        json.key = Buffer.from(receiver.open(json as unknown as ContactKeyResponse)).toString(
          'base64url',
        );
      }
      return { status: res.status, json };
    },
    sweepKeys: () => keys.sweepExpired(),
    async close() {
      for (const c of clients) c.close();
      await relay.close();
      await keys.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The reference key manager (apps/kms-example) as a child process; resolves with its URL. */
export async function startKmsChild(
  dataDir: string,
  secret: Uint8Array,
): Promise<{ url: string; child: ChildProcess; stop(): Promise<void> }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', KMS_MAIN, '--data', dataDir, '--port', '0'],
    {
      cwd: join(ROOT, 'apps', 'kms-example'),
      env: { ...process.env, KMS_HMAC_SECRET: toBase64Url(secret), KMS_CLIENT_ID: 'latchkey' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let err = '';
  child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`kms did not start: ${err}`)), 20_000);
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /kms: (http:\/\/\S+)/.exec(out);
      if (m?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`kms exited with ${code}: ${err}`));
    });
  });
  return {
    url,
    child,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

/** Whether any of `needles` occurs in any of the files (missing files are skipped). */
export function filesContain(files: readonly string[], needles: readonly Uint8Array[]): boolean {
  for (const f of files) {
    if (!existsSync(f)) continue;
    const hay = readFileSync(f);
    for (const n of needles) if (n.length > 0 && hay.indexOf(Buffer.from(n)) >= 0) return true;
  }
  return false;
}

export const dbFiles = (path: string): string[] => [path, `${path}-wal`, `${path}-shm`];
export const b64 = (s: string): Uint8Array => fromBase64Url(s);
