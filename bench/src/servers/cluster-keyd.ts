/**
 * Child process: one key service of the cluster benchmark (cluster-bench.ts), `openKeyService`
 * with `keyStoreUrl` on PostgreSQL: keys, membership, the access log, epoch statements and the
 * signing key all in that database, shared by every key service given the same URL, master key
 * and API secret (issue 17). Its data directory (temporary) holds nothing shared. Logger,
 * sealed-only delivery and the per-IP limits raised through the environment are those of the
 * SQLite key service of keys-bench (servers/keyd.ts), so that only the store differs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openKeyService } from '@latchkey/keyd';
import { childConfig, procStats, serve } from '../ipc.ts';

interface Config {
  secretHex: string;
  masterHex: string;
  keyStoreUrl: string;
}

const config = childConfig<Config>();
// As servers/keyd.ts: all load comes from 127.0.0.1 (docs/operations.md "Quotas and limits").
Object.assign(process.env, {
  LATCHKEY_KEYS_MAX_CONNECTIONS_PER_IP: '100000',
  LATCHKEY_KEYS_RATE_PER_IP: '1000000000/1000000000',
});
const dir = mkdtempSync(join(tmpdir(), 'latchkey-bench-keyd-pg-'));
const service = await openKeyService({
  dataDir: dir,
  host: '127.0.0.1',
  port: 0,
  apiSecret: new Uint8Array(Buffer.from(config.secretHex, 'hex')),
  masterKey: new Uint8Array(Buffer.from(config.masterHex, 'hex')),
  keyStoreUrl: config.keyStoreUrl,
  logger: { level: 'warn', stream: process.stderr },
  log: (line) => void process.stderr.write(`keyd: ${line}\n`),
});

serve(
  { port: service.port, pid: process.pid },
  { stats: (p: { gc?: boolean }) => procStats(p.gc === true) },
  async () => {
    await service.close();
    rmSync(dir, { recursive: true, force: true });
  },
);
