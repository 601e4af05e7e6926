/**
 * One process of the cluster test (cluster.test.ts): `relay` or `keys`, configured from the
 * environment, printing `listening PORT` once it serves. Relays share PostgreSQL (messages,
 * webhook outbox) and Redis; key services share the key database (keys and their own state).
 * Loopback webhook receivers are allowed (the test's receiver is on 127.0.0.1).
 */
import { openKeyService } from '@latchkey/keyd';
import { startRelay } from '@latchkey/relay-app';

const env = (name: string): string => {
  const v = process.env[name];
  if (v === undefined) throw new Error(`${name} missing`);
  return v;
};
const bytes = (name: string): Uint8Array => new Uint8Array(Buffer.from(env(name), 'base64url'));
const port = Number(env('CLUSTER_PORT'));

let close: () => Promise<void>;
if (process.argv[2] === 'relay') {
  const relay = await startRelay({
    dataDir: env('CLUSTER_DATA'),
    host: '127.0.0.1',
    port,
    apiSecret: bytes('CLUSTER_SECRET'),
    storeUrl: env('CLUSTER_STORE'),
    fanoutUrl: env('CLUSTER_FANOUT'),
    webhookAllowlist: ['127.0.0.1'],
    webhookKeyFile: env('CLUSTER_WEBHOOK_KEY_FILE'),
  });
  close = relay.close;
} else {
  const keys = await openKeyService({
    dataDir: env('CLUSTER_DATA'),
    host: '127.0.0.1',
    port,
    apiSecret: bytes('CLUSTER_SECRET'),
    masterKey: bytes('CLUSTER_MASTER'),
    keyStoreUrl: env('CLUSTER_KEYS_STORE'),
    allowPlainKeyDelivery: true,
    webhooks: { allowlist: ['127.0.0.1'] },
    keySweepMs: 1_000,
    log: () => undefined,
    accessStreams: { pollMs: 200, log: () => undefined },
  });
  close = keys.close;
}
process.stdout.write(`listening ${port}\n`);
const stop = (): void => void close().then(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
