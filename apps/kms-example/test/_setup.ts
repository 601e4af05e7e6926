/** Shared test setup: a reference key manager in this process, and the adapters' options. */
import { join } from 'node:path';
import { dbFiles, tempDir } from '../../../packages/keys/test/_helpers.ts';
import type { KmClientOptions } from '@latchkey/keys';
import { startKms, type Kms } from '../src/kms.ts';

export const SECRET = new Uint8Array(32).fill(42);
export const ROOT = new Uint8Array(32).fill(24);
export const CLIENT = 'latchkey';

export interface Env {
  dir: string;
  kms: Kms;
  kmsPath: string;
  cleanup: () => Promise<void>;
}

export async function withKms(extra: Partial<Parameters<typeof startKms>[0]> = {}): Promise<Env> {
  const { dir, cleanup } = tempDir('latchkey-kms-');
  const kmsPath = join(dir, 'kms', 'kms.db');
  const kms = await startKms({
    path: kmsPath,
    rootKey: ROOT,
    clients: { [CLIENT]: SECRET },
    ...extra,
  });
  return {
    dir,
    kms,
    kmsPath,
    cleanup: async () => {
      await kms.close();
      cleanup();
    },
  };
}

/** Fast-failing client options for tests. */
export function clientOptions(url: string, over: Partial<KmClientOptions> = {}): KmClientOptions {
  return {
    url,
    auth: { type: 'hmac', clientId: CLIENT, secret: SECRET },
    timeoutMs: 1000,
    retries: 2,
    backoffMs: 10,
    maxBackoffMs: 50,
    ...over,
  };
}

export { dbFiles };
