/**
 * Test stack: a real relay and key service (port 0, SQLite files in a temporary directory) and
 * the web server in front of them, like `latchkey start`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openKeyService } from '@latchkey/keyd';
import { startRelay } from '@latchkey/relay-app';
import { startWeb, type RunningWeb, type WebOptions } from '../src/index.ts';

export interface WebStack {
  dir: string;
  secret: Uint8Array;
  relayUrl: string;
  keysUrl: string;
  serviceKey: string;
  web: RunningWeb;
  close(): Promise<void>;
}

/** `web`: extra options of the web server (e.g. `scanning`). */
export async function startWebStack(
  opts: { web?: Partial<Pick<WebOptions, 'scanning'>> } = {},
): Promise<WebStack> {
  const dir = await mkdtemp(join(tmpdir(), 'latchkey-web-'));
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const masterKey = crypto.getRandomValues(new Uint8Array(32));
  const keys = await openKeyService({
    dataDir: dir,
    host: '127.0.0.1',
    port: 0,
    apiSecret: secret,
    masterKey,
  });
  const relay = await startRelay({ dataDir: dir, host: '127.0.0.1', port: 0, apiSecret: secret });
  const web = await startWeb({
    host: '127.0.0.1',
    port: 0,
    apiSecret: secret,
    relayUrl: relay.url,
    keysUrl: keys.url,
    serviceKey: keys.servicePublicKey,
    ...opts.web,
  });
  return {
    dir,
    secret,
    relayUrl: relay.url,
    keysUrl: keys.url,
    serviceKey: keys.servicePublicKey,
    web,
    async close() {
      await web.close();
      await relay.close();
      await keys.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
