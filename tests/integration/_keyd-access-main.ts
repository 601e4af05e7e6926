/**
 * The key service alone as a child process for the access-stream crash test: `openKeyService`
 * on the internal key manager over LATCHKEY_TEST_DATA, with its webhook outbox (loopback
 * allowed). Secrets come base64url in the environment. Prints `keys: URL` once listening.
 */
import { openKeyService } from '@latchkey/keyd';

const env = (name: string): string => {
  const v = process.env[name];
  if (v === undefined) throw new Error(`${name} missing`);
  return v;
};
const bytes = (name: string): Uint8Array => new Uint8Array(Buffer.from(env(name), 'base64url'));

const keys = await openKeyService({
  dataDir: env('LATCHKEY_TEST_DATA'),
  host: '127.0.0.1',
  port: 0,
  apiSecret: bytes('LATCHKEY_TEST_SECRET'),
  masterKey: bytes('LATCHKEY_TEST_MASTER'),
  keySweepMs: 3_600_000,
  webhooks: { allowlist: ['127.0.0.1'] },
  log: () => undefined,
});
process.stdout.write(`keys: ${keys.url}\n`);
const stop = (): void => void keys.close().then(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
