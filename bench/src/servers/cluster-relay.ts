/**
 * Child process: one relay of the cluster benchmark (cluster-bench.ts), `createRelay` over
 * `PgMessageStore` (messages and contacts on PostgreSQL, shared by every relay on the database)
 * and `RedisFanout` (deliveries to members connected to another relay), as `latchkey-relay
 * --store postgres://... --fanout redis://...` runs it (apps/relay), without the webhook outbox.
 * Admission limits are raised as in servers/latchkey.ts, the SQLite relay it is compared with;
 * the per-connection rate limit keeps its default.
 */
import { createRelay } from '@latchkey/relay';
import { PgMessageStore } from '@latchkey/relay/postgres';
import { RedisFanout } from '@latchkey/relay/redis';
import { childConfig, procStats, serve } from '../ipc.ts';

interface Config {
  secretHex: string;
  storeUrl: string;
  fanoutUrl: string;
}

const config = childConfig<Config>();
const store = await PgMessageStore.open({ url: config.storeUrl });
const fanout = new RedisFanout({ url: config.fanoutUrl });
const relay = createRelay({
  store,
  fanout,
  apiSecret: new Uint8Array(Buffer.from(config.secretHex, 'hex')),
  admission: {
    maxConnectionsPerIp: 1_000_000,
    perIpRateLimit: { perSecond: 1e9, burst: 1e9 },
    perIpConnectRate: { perSecond: 1e9, burst: 1e9 },
  },
});
const { port } = await relay.listen({ host: '127.0.0.1', port: 0 });

serve(
  { port, pid: process.pid },
  {
    stats: (p: { gc?: boolean }) => ({
      ...procStats(p.gc === true),
      connections: relay.connections,
    }),
  },
  async () => {
    await relay.close();
    await Promise.allSettled([store.close(), fanout.close()]);
  },
);
