/**
 * Test harness: a real relay and key service on 127.0.0.1 (port 0) over SQLite files in a
 * temporary data directory, and Node clients that talk to them through real sockets.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { LatchkeyClient, type ClientOptions, type WebSocketConstructor } from '@latchkey/client';
import { openKeyService } from '@latchkey/keyd';
import { startRelay } from '@latchkey/relay-app';
import type { Role } from '@latchkey/protocol';
import { mintToken } from '@latchkey/tokens';

export interface Stack {
  dir: string;
  secret: Uint8Array;
  masterKey: Uint8Array;
  relayUrl: string;
  keysUrl: string;
  token(
    contactId: string,
    participantId: string,
    role?: Role,
    ttlSeconds?: number,
  ): Promise<string>;
  client(token: string, opts?: Partial<ClientOptions>): Promise<LatchkeyClient>;
  /** Stops the relay (clients see the connection drop). */
  stopRelay(): Promise<void>;
  /** Starts the relay again on the same port and data. */
  startRelay(): Promise<void>;
  close(): Promise<void>;
}

export async function startStack(): Promise<Stack> {
  const dir = await mkdtemp(join(tmpdir(), 'latchkey-it-'));
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const masterKey = crypto.getRandomValues(new Uint8Array(32));
  const keys = await openKeyService({
    dataDir: dir,
    host: '127.0.0.1',
    port: 0,
    apiSecret: secret,
    masterKey,
  });
  let relay: Awaited<ReturnType<typeof startRelay>> | null = await startRelay({
    dataDir: dir,
    host: '127.0.0.1',
    port: 0,
    apiSecret: secret,
  });
  const relayPort = relay.port;
  const clients: LatchkeyClient[] = [];
  const stack: Stack = {
    dir,
    secret,
    masterKey,
    relayUrl: relay.url,
    keysUrl: keys.url,
    token: (contactId, participantId, role = 'visitor', ttlSeconds = 600) =>
      mintToken(secret, { contactId, participantId, role, ttlSeconds }),
    async client(token, opts = {}) {
      const c = await LatchkeyClient.connect({
        relayUrl: stack.relayUrl,
        keysUrl: stack.keysUrl,
        token,
        WebSocket: WebSocket as unknown as WebSocketConstructor,
        backoff: { minMs: 50, maxMs: 400 },
        ...opts,
      });
      clients.push(c);
      return c;
    },
    async stopRelay() {
      await relay?.close();
      relay = null;
    },
    async startRelay() {
      relay = await startRelay({
        dataDir: dir,
        host: '127.0.0.1',
        port: relayPort,
        apiSecret: secret,
      });
    },
    async close() {
      for (const c of clients) c.close();
      await relay?.close();
      await keys.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
  return stack;
}

/** Resolves once `predicate` holds, polling every 10 ms, or rejects after `ms`. */
export async function until(
  predicate: () => boolean,
  ms = 5000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
