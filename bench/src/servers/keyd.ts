/**
 * Child process: the key service under test (`openKeyService` from apps/keyd) as the stand-alone
 * process runs it: the built-in key manager over its default embedded SQLite store, the access
 * table, access log and signing key, all in a fresh temporary data directory, logger at `warn`
 * (the process default, to stderr here so stdout keeps the summary). Sealed key delivery only
 * (no TLS, and plain delivery stays refused), as a browser client asks for it.
 *
 * Limits are set the way an operator would for a load test, through the environment that
 * limits.ts reads (docs/operations.md "Quotas and limits"): all load comes from 127.0.0.1, so the
 * per-IP connection cap (default 64) and per-IP request rate (default 50/s, burst 200) are raised,
 * as the relay bench raises its per-IP admission limits. The per-participant key-request rate
 * (2/s, burst 20) and the total connection cap (4,096) keep their defaults.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openKeyService } from '@latchkey/keyd';
import { childConfig, procStats, serve } from '../ipc.ts';

interface Config {
  secretHex: string;
}

/** The operator's settings for a load test from one address. */
const KEYD_BENCH_ENV: Readonly<Record<string, string>> = {
  LATCHKEY_KEYS_MAX_CONNECTIONS_PER_IP: '100000',
  LATCHKEY_KEYS_RATE_PER_IP: '1000000000/1000000000',
};

const config = childConfig<Config>();
Object.assign(process.env, KEYD_BENCH_ENV);
const dir = mkdtempSync(join(tmpdir(), 'latchkey-bench-keyd-'));
const service = await openKeyService({
  dataDir: dir,
  host: '127.0.0.1',
  port: 0,
  apiSecret: new Uint8Array(Buffer.from(config.secretHex, 'hex')),
  masterKey: crypto.getRandomValues(new Uint8Array(32)),
  logger: { level: 'warn', stream: process.stderr },
  log: (line) => void process.stderr.write(`keyd: ${line}\n`),
});

serve(
  { port: service.port, servicePublicKey: service.servicePublicKey },
  { stats: (p: { gc?: boolean }) => procStats(p.gc === true) },
  async () => {
    await service.close();
    rmSync(dir, { recursive: true, force: true });
  },
);
