/**
 * The key service alone as a child process (tests that kill it): `openKeyService` over
 * LATCHKEY_TEST_DATA on LATCHKEY_TEST_PORT with the http key manager at LATCHKEY_TEST_KMS_URL.
 * Secrets come base64url in the environment. Prints `keys: URL` once listening.
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
  port: Number(env('LATCHKEY_TEST_PORT')),
  apiSecret: bytes('LATCHKEY_TEST_SECRET'),
  masterKey: bytes('LATCHKEY_TEST_MASTER'),
  keyManager: {
    kind: 'http',
    url: env('LATCHKEY_TEST_KMS_URL'),
    secret: bytes('LATCHKEY_TEST_KMS_SECRET'),
    keyId: 'latchkey-kek',
    timeoutMs: Number(process.env.LATCHKEY_TEST_KMS_TIMEOUT ?? 500),
    retries: 0,
    breakerThreshold: 1000,
  },
  log: () => undefined,
});
process.stdout.write(`keys: ${keys.url}\n`);
const stop = (): void => void keys.close().then(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
