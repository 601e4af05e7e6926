/**
 * `latchkey start`: relay, key service and web app in this process until SIGTERM/SIGINT. Reads
 * the relay's flags (port, origins, relay allowlist, backends) here and the key service's through
 * key-settings.ts, the settings of @latchkey/keyd that the stand-alone `keyd` reads too (key
 * manager, key store, TLS, admin and webhook allowlists, ...; TLS and the two allowlists apply to
 * all three servers). Output lines are part of the contract documented in README.
 */
import { mkdir } from 'node:fs/promises';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { resolve as resolvePath } from 'node:path';
import { ConfigError, keyServiceSecrets, openKeyService } from '@latchkey/keyd';
import { assertSecureListener, isLoopbackHost } from '@latchkey/protocol';
import {
  checkOpenFiles,
  DEFAULT_RELAY_MAX_CONNECTIONS,
  OPEN_FILES_RESERVE,
  startRelay,
} from '@latchkey/relay-app';
import { parseIpAllowlist } from '@latchkey/tokens';
import { DEFAULT_PORT, dataDir, writeEndpoints } from './config.ts';
import { keyServiceSettings, type KeyStartFlags } from './key-settings.ts';
import { startLocalScanner, type StartedScanner } from './start-scanner.ts';
import { EXIT, UsageError } from './usage.ts';

type Out = (line: string) => void;

export interface StartFlags extends KeyStartFlags {
  data?: string | undefined;
  port?: string | undefined;
  host?: string | undefined;
  'allowed-origins'?: string | undefined;
  durability?: string | undefined;
  'relay-allowlist'?: string | undefined;
  /** postgres://... message store for the relay (default SQLite under --data). */
  store?: string | undefined;
  /** redis://... fan-out between relays (default in-process). */
  fanout?: string | undefined;
  /**
   * The relay's webhook outbox key file (default `<data>/relay/webhooks.db.key`): with `--store`,
   * every relay on that database shares one outbox and needs this same file (docs/webhooks.md).
   */
  'webhook-key-file'?: string | undefined;
  /** Run the attachment scanner too (needs clamd; start-scanner.ts). */
  scanner?: boolean | undefined;
  /** clamd's socket for `--scanner` (`unix:/path` or `tcp://host:port`). */
  clamd?: string | undefined;
}

/** A comma-separated flag as a list; undefined when absent. */
function list(text: string | undefined): string[] | undefined {
  return text
    ?.split(',')
    .map((o) => o.trim())
    .filter((o) => o.length > 0);
}

/** `--durability normal|full` (default normal; docs/guarantees.md). */
function durabilityFlag(text: string | undefined): 'normal' | 'full' {
  if (text === undefined || text === 'normal') return 'normal';
  if (text === 'full') return 'full';
  throw new UsageError('--durability must be normal or full');
}

/** A free TCP port on `host` (probed; used to know the web origin before it listens). */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Browser origins allowed by default: the web app's own, under both loopback names. */
function defaultOrigins(scheme: string, host: string, port: number): string[] {
  const hostPart = host.includes(':') ? `[${host}]` : host;
  const origins = [`${scheme}://${hostPart}:${port}`];
  if (isLoopbackHost(host))
    origins.push(`${scheme}://localhost:${port}`, `${scheme}://127.0.0.1:${port}`);
  return [...new Set(origins)];
}

function parsePort(text: string | undefined): number {
  if (text === undefined) return DEFAULT_PORT;
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65534)
    throw new UsageError('--port must be 0..65534');
  return Number(text);
}

/** A backend URL flag with one of `schemes`; the error never echoes it (it may hold a password). */
function backendFlag(text: string, name: string, schemes: readonly string[]): string {
  let ok: boolean;
  try {
    const u = new URL(text);
    ok = schemes.includes(u.protocol) && u.hostname !== '';
  } catch {
    ok = false;
  }
  if (!ok) throw new UsageError(`${name} must be a ${schemes[0] ?? ''}//... URL`);
  return text;
}

/** `--webhook-key-file` (or LATCHKEY_WEBHOOK_KEY_FILE) as the relay's option; none when unset. */
function webhookKeyFile(text: string | undefined): { webhookKeyFile?: string } {
  if (text === undefined || text === '') return {};
  if (text.includes('\0')) throw new UsageError('--webhook-key-file must be a path');
  return { webhookKeyFile: resolvePath(text) };
}

/** Whether two postgres:// URLs name the same database on the same server. */
function sameDatabase(a: string, b: string): boolean {
  const [x, y] = [new URL(a), new URL(b)];
  return (
    x.hostname === y.hostname &&
    (x.port || '5432') === (y.port || '5432') &&
    x.pathname === y.pathname
  );
}

/** `latchkey start`: relay and key service in this process until SIGTERM/SIGINT. */
export async function start(flags: StartFlags, out: Out): Promise<number> {
  const dir = dataDir(flags.data);
  const port = parsePort(flags.port);
  const host = flags.host ?? '127.0.0.1';
  // TLS, admin and webhook allowlists, key store, key manager...: the key service's settings.
  const settings = keyServiceSettings(flags);
  const { tls } = settings;
  const transport = { ...(tls ? { tls } : {}), insecure: settings.insecure };
  // Fail before touching anything when a plain listener would face the network.
  try {
    assertSecureListener('latchkey', host, {
      tls: tls !== undefined,
      insecure: transport.insecure,
    });
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  const webPort = port === 0 ? await freePort(host) : port + 2;
  const allowedOrigins =
    list(flags['allowed-origins']) ?? defaultOrigins(tls ? 'https' : 'http', host, webPort);
  const adminAllowlist = settings.adminIpAllowlist;
  const relayAllowlist = list(flags['relay-allowlist']);
  if (flags.clamd !== undefined && flags.scanner !== true)
    throw new UsageError('--clamd goes with --scanner');
  // The scanner's webhook receiver listens on loopback: the relay must be allowed to call it.
  const webhookAllowlist = flags.scanner
    ? [...(settings.webhooks.allowlist ?? []), '127.0.0.1']
    : settings.webhooks.allowlist;
  try {
    if (relayAllowlist) parseIpAllowlist(relayAllowlist);
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  const admin = adminAllowlist ? { adminIpAllowlist: adminAllowlist } : {};
  const backends = {
    ...(flags.store === undefined
      ? {}
      : { storeUrl: backendFlag(flags.store, '--store', ['postgres:', 'postgresql:']) }),
    ...(flags.fanout === undefined
      ? {}
      : { fanoutUrl: backendFlag(flags.fanout, '--fanout', ['redis:', 'rediss:']) }),
    durability: durabilityFlag(flags.durability ?? process.env.LATCHKEY_DURABILITY),
    ...webhookKeyFile(flags['webhook-key-file'] ?? process.env.LATCHKEY_WEBHOOK_KEY_FILE),
  };
  const { keyStoreUrl } = settings;
  if (
    keyStoreUrl !== undefined &&
    backends.storeUrl !== undefined &&
    sameDatabase(keyStoreUrl, backends.storeUrl)
  ) {
    throw new UsageError('--keys-store must be a database of its own, not the --store one');
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // Relay, key service and web app share this process's file descriptors (docs/operations.md).
  const nofile = checkOpenFiles(
    DEFAULT_RELAY_MAX_CONNECTIONS + 2 * 4096 + OPEN_FILES_RESERVE,
    'latchkey',
  );
  if (nofile !== null) process.stderr.write(`${nofile}\n`);
  let secrets;
  try {
    secrets = keyServiceSecrets({ dataDir: dir, env: process.env });
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message);
    throw err;
  }
  const { apiSecret: secret, master } = secrets;
  out(
    master.source === 'env'
      ? 'master-key: from LATCHKEY_MASTER_KEY'
      : `master-key: ${master.path ?? ''}${master.created ? ' (generated, mode 0600)' : ''}`,
  );
  let keys;
  try {
    keys = await openKeyService({
      ...settings,
      dataDir: dir,
      host,
      port: port === 0 ? 0 : port + 1,
      apiSecret: secret,
      masterKey: master.key,
      // Its own webhook outbox (keys/webhooks.db, settings.webhooks): key.rotated, ...
      allowedOrigins,
    });
  } finally {
    master.key.fill(0);
  }
  let relay: Awaited<ReturnType<typeof startRelay>>;
  try {
    relay = await startRelay({
      dataDir: dir,
      host,
      port,
      apiSecret: secret,
      admission: { allowedOrigins, ...(relayAllowlist ? { ipAllowlist: relayAllowlist } : {}) },
      ...admin,
      ...transport,
      ...backends,
      ...(webhookAllowlist ? { webhookAllowlist } : {}),
    });
  } catch (err) {
    await keys.close();
    throw err;
  }
  let scanner: StartedScanner | undefined;
  if (flags.scanner) {
    try {
      scanner = await startLocalScanner({
        relayUrl: relay.url,
        keysUrl: keys.url,
        serviceKey: keys.servicePublicKey,
        apiSecret: secret,
        port: port === 0 ? 0 : port + 3,
        clamd: flags.clamd,
      });
    } catch (err) {
      await Promise.allSettled([relay.close(), keys.close()]);
      throw err;
    }
  }
  let web;
  try {
    // The web server (widget, console, demo backend) builds its bundles first when stale.
    // Loaded here only, so that token/send/read start fast.
    const { startWeb } = await import('@latchkey/web');
    web = await startWeb({
      host,
      port: webPort,
      apiSecret: secret,
      ...transport,
      relayUrl: relay.url,
      keysUrl: keys.url,
      serviceKey: keys.servicePublicKey,
      scanning: scanner !== undefined,
    });
  } catch (err) {
    await Promise.allSettled([relay.close(), keys.close(), scanner?.close()]);
    throw err;
  }
  await writeEndpoints(dir, { relay: relay.url, keys: keys.url, web: web.url });
  out(`data: ${dir}`);
  out(`relay: ${relay.url}`);
  out(`keys: ${keys.url}`);
  out(`web: ${web.url}`);
  out(`visitor: ${web.visitorUrl}`);
  out(`agent: ${web.agentUrl}`);
  if (scanner) out(`scanner: ${scanner.url}`);
  out('ready');
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (): void => {
      if (stopping) return;
      stopping = true;
      void Promise.allSettled([web.close(), scanner?.close(), relay.close(), keys.close()]).then(
        () => resolve(),
      );
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  out('stopped');
  return EXIT.ok;
}
