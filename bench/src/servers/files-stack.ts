/**
 * Child process for the files benchmark (files-bench.ts): the relay app (`startRelay`, its
 * default SQLite store and files directory, fsync before an upload is acknowledged complete) and
 * the key service (`openKeyService`, built-in key manager), both in one fresh temporary data
 * directory on 127.0.0.1; and, for the baseline, a plain static file server over node:http that
 * stores a PUT body in a file (fsynced before its answer, as the relay does) and serves it back
 * with GET, without authentication, validation or crypto.
 */
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { openKeyService } from '@latchkey/keyd';
import { startRelay } from '@latchkey/relay-app';
import { childConfig, procStats, serve } from '../ipc.ts';

interface Config {
  secretHex: string;
}

const config = childConfig<Config>();
const dir = mkdtempSync(join(tmpdir(), 'latchkey-bench-files-'));
const apiSecret = new Uint8Array(Buffer.from(config.secretHex, 'hex'));
const keys = await openKeyService({
  dataDir: dir,
  host: '127.0.0.1',
  port: 0,
  apiSecret,
  masterKey: crypto.getRandomValues(new Uint8Array(32)),
  logger: { level: 'warn', stream: process.stderr },
  log: (line) => void process.stderr.write(`keyd: ${line}\n`),
});
const relay = await startRelay({ dataDir: dir, host: '127.0.0.1', port: 0, apiSecret });

const staticFile = join(dir, 'static.bin');
const plain = createServer((req, res) => {
  void (async () => {
    if (req.method === 'PUT') {
      await pipeline(req, createWriteStream(staticFile));
      const fh = await open(staticFile, 'r+');
      await fh.sync();
      await fh.close();
      res.writeHead(201).end();
    } else if (req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      await pipeline(createReadStream(staticFile), res);
    } else res.writeHead(405).end();
  })().catch(() => res.destroy());
});
await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
const plainPort = (plain.address() as { port: number }).port;

serve(
  { relayUrl: relay.url, keysUrl: keys.url, staticUrl: `http://127.0.0.1:${plainPort}/file` },
  { stats: () => procStats(false) },
  async () => {
    plain.close();
    await relay.close();
    await keys.close();
    rmSync(dir, { recursive: true, force: true });
  },
);
