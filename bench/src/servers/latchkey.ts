/**
 * Child process: the Latchkey relay under test (`createRelay` from @latchkey/relay) with its
 * default SQLite store (WAL, synchronous=NORMAL; `durability: 'full'` for FULL) in a fresh temporary directory on the same disk
 * as the rest of the machine's data. Per-IP admission limits are raised because every benchmark
 * connection comes from 127.0.0.1; the per-connection rate limit keeps its default (100/s).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRelay } from '@latchkey/relay';
import { childConfig, procStats, serve } from '../ipc.ts';

interface Config {
  secretHex: string;
  durability?: 'normal' | 'full';
}

const config = childConfig<Config>();
const dir = mkdtempSync(join(tmpdir(), 'latchkey-bench-'));
const relay = createRelay({
  store: {
    path: join(dir, 'messages.db'),
    synchronous: config.durability === 'full' ? 'FULL' : 'NORMAL',
  },
  apiSecret: new Uint8Array(Buffer.from(config.secretHex, 'hex')),
  admission: {
    maxConnectionsPerIp: 1_000_000,
    perIpRateLimit: { perSecond: 1e9, burst: 1e9 },
    perIpConnectRate: { perSecond: 1e9, burst: 1e9 },
  },
});
const { port } = await relay.listen({ host: '127.0.0.1', port: 0 });

serve(
  { port },
  {
    stats: (p: { gc?: boolean }) => ({
      ...procStats(p.gc === true),
      connections: relay.connections,
      store: relay.store.stats,
    }),
  },
  async () => {
    await relay.close();
    rmSync(dir, { recursive: true, force: true });
  },
);
