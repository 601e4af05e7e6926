/**
 * The `latchkey` subcommands: start, token, send, read. Each returns its exit code; output
 * lines are part of the contract documented in README.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { WebSocket } from 'ws';
import { LatchkeyClient, type HistoryEntry, type WebSocketConstructor } from '@latchkey/client';
import { resolveMasterKey } from '@latchkey/keys';
import { openKeyService } from '@latchkey/keyd';
import {
  checkOpenFiles,
  DEFAULT_RELAY_MAX_CONNECTIONS,
  OPEN_FILES_RESERVE,
  startRelay,
} from '@latchkey/relay-app';
import { LatchkeyError, Role, assertSecureListener, isLoopbackHost } from '@latchkey/protocol';
import { mintToken, parseIpAllowlist } from '@latchkey/tokens';
import { DEFAULT_PORT, apiSecret, dataDir, endpoints, parseTtl, writeEndpoints } from './config.ts';
import { EXIT, UsageError } from './usage.ts';
import { keyServiceSettings, type KeyStartFlags } from './keys.ts';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';

type Out = (line: string) => void;

export interface StartFlags extends KeyStartFlags {
  data?: string | undefined;
  port?: string | undefined;
  host?: string | undefined;
  'tls-cert'?: string | undefined;
  'tls-key'?: string | undefined;
  insecure?: boolean | undefined;
  'allowed-origins'?: string | undefined;
  'admin-allowlist'?: string | undefined;
  durability?: string | undefined;
  'relay-allowlist'?: string | undefined;
  /** IPs/CIDR ranges webhook endpoints may reach although private or loopback (docs/webhooks.md). */
  'webhook-allowlist'?: string | undefined;
  /** postgres://... message store for the relay (default SQLite under --data). */
  store?: string | undefined;
  /** redis://... fan-out between relays (default in-process). */
  fanout?: string | undefined;
  /** postgres://... wrapped content keys, in a database of their own (default keys/keys.db). */
  'keys-store'?: string | undefined;
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

/** `latchkey start`: relay and key service in this process until SIGTERM/SIGINT. */
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

/** Whether two postgres:// URLs name the same database on the same server. */
function sameDatabase(a: string, b: string): boolean {
  const [x, y] = [new URL(a), new URL(b)];
  return (
    x.hostname === y.hostname &&
    (x.port || '5432') === (y.port || '5432') &&
    x.pathname === y.pathname
  );
}

export async function start(flags: StartFlags, out: Out): Promise<number> {
  const dir = dataDir(flags.data);
  const port = parsePort(flags.port);
  const host = flags.host ?? '127.0.0.1';
  if ((flags['tls-cert'] === undefined) !== (flags['tls-key'] === undefined)) {
    throw new UsageError('--tls-cert and --tls-key go together');
  }
  const tls =
    flags['tls-cert'] && flags['tls-key']
      ? { certFile: flags['tls-cert'], keyFile: flags['tls-key'] }
      : undefined;
  const transport = { ...(tls ? { tls } : {}), insecure: flags.insecure === true };
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
  const adminAllowlist = list(flags['admin-allowlist']);
  const relayAllowlist = list(flags['relay-allowlist']);
  const webhookAllowlist = list(flags['webhook-allowlist']);
  try {
    for (const l of [adminAllowlist, relayAllowlist, webhookAllowlist]) if (l) parseIpAllowlist(l);
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
  };
  const keyStoreUrl =
    flags['keys-store'] === undefined
      ? undefined
      : backendFlag(flags['keys-store'], '--keys-store', ['postgres:', 'postgresql:']);
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
  const secret = await apiSecret(dir);
  const master = await resolveMasterKey({ env: process.env, file: join(dir, 'master.key') });
  out(
    master.source === 'env'
      ? 'master-key: from LATCHKEY_MASTER_KEY'
      : `master-key: ${master.path ?? ''}${master.created ? ' (generated, mode 0600)' : ''}`,
  );
  const keys = await openKeyService({
    dataDir: dir,
    host,
    port: port === 0 ? 0 : port + 1,
    apiSecret: secret,
    masterKey: master.key,
    ...keyServiceSettings(flags),
    ...(keyStoreUrl === undefined ? {} : { keyStoreUrl }),
    allowedOrigins,
    ...admin,
    ...transport,
    // Its own webhook outbox (keys/webhooks.db): key.rotated, contact.shredded.
    webhooks: webhookAllowlist ? { allowlist: webhookAllowlist } : {},
  });
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
    });
  } catch (err) {
    await Promise.allSettled([relay.close(), keys.close()]);
    throw err;
  }
  await writeEndpoints(dir, { relay: relay.url, keys: keys.url, web: web.url });
  out(`data: ${dir}`);
  out(`relay: ${relay.url}`);
  out(`keys: ${keys.url}`);
  out(`web: ${web.url}`);
  out(`visitor: ${web.visitorUrl}`);
  out(`agent: ${web.agentUrl}`);
  out('ready');
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (): void => {
      if (stopping) return;
      stopping = true;
      void Promise.allSettled([web.close(), relay.close(), keys.close()]).then(() => resolve());
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  out('stopped');
  return EXIT.ok;
}

export interface TokenFlags {
  contact?: string | undefined;
  participant?: string | undefined;
  role?: string | undefined;
  ttl?: string | undefined;
  data?: string | undefined;
}

/** `latchkey token`: prints a participant token. */
export async function token(flags: TokenFlags, out: Out): Promise<number> {
  if (!flags.contact || !flags.participant || !flags.role) {
    throw new UsageError('token needs --contact, --participant and --role');
  }
  const role = Role.safeParse(flags.role);
  if (!role.success) throw new UsageError('--role must be visitor, agent or supervisor');
  const ttlSeconds = parseTtl(flags.ttl ?? '1h');
  const secret = await apiSecret(dataDir(flags.data));
  try {
    out(
      await mintToken(secret, {
        contactId: flags.contact,
        participantId: flags.participant,
        role: role.data,
        ttlSeconds,
      }),
    );
  } catch (err) {
    if (LatchkeyError.is(err, 'BAD_REQUEST')) throw new UsageError(err.message);
    throw err;
  }
  return EXIT.ok;
}

export interface ClientFlags {
  token?: string | undefined;
  /** A file holding the token (kept out of the process list, unlike --token). */
  'token-file'?: string | undefined;
  relay?: string | undefined;
  keys?: string | undefined;
  data?: string | undefined;
}

/**
 * The participant token: `--token-file FILE`, else `LATCHKEY_TOKEN`, else `--token` (visible to
 * other users in the process list: the other two keep it out of `/proc`).
 * @throws UsageError when none is given, more than one is, or the file cannot be read.
 */
async function tokenOf(flags: ClientFlags): Promise<string> {
  const given = [flags.token !== undefined, flags['token-file'] !== undefined].filter(
    Boolean,
  ).length;
  if (given > 1) throw new UsageError('give either --token or --token-file, not both');
  if (flags['token-file'] !== undefined) {
    let text: string;
    try {
      text = await readFile(flags['token-file'], 'utf8');
    } catch {
      throw new UsageError(`cannot read --token-file ${flags['token-file']}`);
    }
    const t = text.trim();
    if (t === '') throw new UsageError('--token-file is empty');
    return t;
  }
  const t = flags.token ?? process.env['LATCHKEY_TOKEN']?.trim();
  if (!t) throw new UsageError('a token is required: --token-file FILE, LATCHKEY_TOKEN or --token');
  return t;
}

/**
 * A client for one command. `live` joins the contact, so the whole history is received and
 * checked first: what a send then vouches for having seen (its transcript fields) is real.
 */
async function connect(flags: ClientFlags, live = false): Promise<LatchkeyClient> {
  const tokenText = await tokenOf(flags);
  const ep = await endpoints(flags, dataDir(flags.data));
  return LatchkeyClient.connect({
    relayUrl: ep.relay,
    keysUrl: ep.keys,
    token: tokenText,
    WebSocket: WebSocket as unknown as WebSocketConstructor,
    live,
    reconnect: false,
  });
}

const SEND_TIMEOUT_MS = 15_000;

/** `latchkey send`: one message, printed seq after the ack. */
export async function send(
  flags: ClientFlags,
  text: string | undefined,
  out: Out,
): Promise<number> {
  if (text === undefined || text.length === 0) throw new UsageError('send needs the message TEXT');
  const client = await connect(flags, true);
  try {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new LatchkeyError('TIMEOUT', 'no ack from the relay')),
        SEND_TIMEOUT_MS,
      );
    });
    const result = await Promise.race([client.send(text), timeout]).finally(() =>
      clearTimeout(timer),
    );
    out(String(result.seq));
    return EXIT.ok;
  } finally {
    client.close();
  }
}

/** Escapes control characters so that a message cannot drive the terminal. */
function printable(text: string): string {
  return text.replace(
    // eslint-disable-next-line no-control-regex
    /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

export interface ReadFlags extends ClientFlags {
  since?: string | undefined;
  json?: boolean | undefined;
}

function formatEntry(e: HistoryEntry, json: boolean): string {
  if (json) {
    if (e.ok)
      return JSON.stringify({ seq: e.seq, sender: e.senderId, sentAt: e.sentAt, text: e.text });
    if (e.code === 'INTEGRITY') {
      return JSON.stringify({
        seq: e.seq,
        sender: e.senderId || '?',
        error: e.code,
        code: e.integrity,
        ...(e.missing === undefined ? {} : { missing: e.missing }),
      });
    }
    return JSON.stringify({ seq: e.seq, sender: e.senderId, error: e.code });
  }
  if (!e.ok && e.code === 'INTEGRITY') {
    const what = e.integrity === 'MISSING' ? `MISSING ${e.missing ?? 0}` : (e.integrity ?? '');
    return `${e.seq} INTEGRITY ${what} from ${e.senderId || '?'}`;
  }
  if (!e.ok) return `${e.seq} ${e.code} from ${e.senderId}`;
  return `${e.seq} ${new Date(e.sentAt).toISOString()} ${e.senderId}: ${printable(e.text)}`;
}

/**
 * `latchkey read`: the contact's history after `--since`, each message checked (signature, key,
 * transcript: the whole history is read and checked, only what is after `--since` printed);
 * exit 3 when a message failed to open or failed a check.
 */
export async function read(flags: ReadFlags, out: Out): Promise<number> {
  let since = 0;
  if (flags.since !== undefined) {
    if (!/^\d{1,15}$/.test(flags.since))
      throw new UsageError('--since must be a non-negative integer');
    since = Number(flags.since);
  }
  const client = await connect(flags);
  try {
    const entries = await client.history(0);
    let failed = false;
    for (const e of entries) {
      if (e.seq <= since) continue;
      out(formatEntry(e, flags.json === true));
      if (!e.ok) failed = true;
    }
    return failed ? EXIT.decryptFailed : EXIT.ok;
  } finally {
    client.close();
  }
}
