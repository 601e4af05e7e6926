/**
 * @latchkey/relay-app: the relay process as a function — opens the message store under the data
 * directory and serves the relay protocol (@latchkey/relay) on one host and port.
 */
import { chmod, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { assertSecureListener } from '@latchkey/protocol';
import {
  createRelay,
  SqliteQueueStore,
  type Quota,
  WebhookService,
  type Fanout,
  type MessageStore,
  StoreError,
  type AdmissionOptions,
  type RelayLogEvent,
} from '@latchkey/relay';

export { checkOpenFiles, DEFAULT_RELAY_MAX_CONNECTIONS, OPEN_FILES_RESERVE } from '@latchkey/relay';
import { fileSettings, quotaSettings, type FileSettings } from './config.ts';

export { quotaSettings } from './config.ts';
export {
  loadConfig,
  parseConfig,
  ConfigError,
  DEFAULT_RELAY_PORT,
  type RelayConfig,
} from './config.ts';

export interface StartRelayOptions {
  /** Data directory; the store lives at `<dataDir>/relay/messages.db`. */
  dataDir: string;
  host: string;
  /** TCP port; 0 picks a free one. */
  port: number;
  /** Secret that participant tokens are signed with (at least 32 bytes). */
  apiSecret: Uint8Array;
  /** Structured events (codes and opaque ids only). */
  log?: (e: object) => void;
  /** PEM certificate and key files: serve wss:// instead of ws://. */
  tls?: { certFile: string; keyFile: string };
  /** Allow a plain ws:// listener on a non-loopback address (TLS terminated in front). */
  insecure?: boolean;
  /** Origin/IP allowlists and per-IP limits. */
  admission?: AdmissionOptions;
  /** IPs/CIDR ranges allowed to reach the admin API (default: loopback only). */
  adminIpAllowlist?: readonly string[];
  /**
   * `postgres://...`: messages and contacts on PostgreSQL (shared by several relays) instead of
   * `<dataDir>/relay/messages.db`.
   */
  storeUrl?: string;
  /** `redis://...`: fan-out between relays through Redis (needed with several relays). */
  fanoutUrl?: string;
  /**
   * SQLite durability (docs/guarantees.md): `normal` (default) survives a process crash, `full`
   * also a power loss (an fsync per group commit).
   */
  durability?: 'normal' | 'full';
  /** IPs/CIDR ranges that webhook endpoints may reach although private or loopback (docs/webhooks.md). */
  webhookAllowlist?: readonly string[];
  /**
   * The webhook outbox key file (32 bytes, 0600; created when missing), default
   * `<dataDir>/relay/webhooks.db.key`. With `storeUrl` the outbox is shared by every relay on
   * that database, and every one of them needs this same file (docs/webhooks.md "Several
   * processes").
   */
  webhookKeyFile?: string;
  /** Stored messages and bytes per contact and participant (default DEFAULT_QUOTA, docs/operations.md). */
  quota?: Partial<Quota>;
  /**
   * The file store and its limits (docs/operations.md "Files"). Unset: LATCHKEY_RELAY_FILES_DIR,
   * LATCHKEY_RELAY_MAX_FILE_BYTES, LATCHKEY_RELAY_CONTACT_FILE_QUOTA, else the defaults.
   */
  files?: FileSettings;
}

export interface RunningRelay {
  /** `ws://host:port` */
  url: string;
  port: number;
  /** Acks pending sends, closes clients (1001), the server and the store. Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts a relay over `<dataDir>/relay/messages.db` (directory created with mode 0700).
 * @throws InsecureListenerError for a non-loopback host without TLS or `insecure`.
 * @throws RangeError when apiSecret is shorter than 32 bytes or an allowlist entry is bad.
 * @throws LatchkeyError UNAVAILABLE when the store or the webhook outbox cannot be opened.
 * @throws WebhookOutboxKeyError (code UNAVAILABLE) when the outbox on PostgreSQL was set up
 *   with another key file than `webhookKeyFile`.
 * @throws Error when the address cannot be bound (e.g. EADDRINUSE).
 */
export async function startRelay(opts: StartRelayOptions): Promise<RunningRelay> {
  assertSecureListener('relay', opts.host, {
    tls: opts.tls !== undefined,
    insecure: opts.insecure === true,
  });
  const tls = opts.tls && {
    cert: await readFile(opts.tls.certFile),
    key: await readFile(opts.tls.keyFile),
  };
  const dir = join(opts.dataDir, 'relay');
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // mkdir leaves an existing directory's mode alone: the messages' metadata is the owner's only.
    await chmod(dir, 0o700);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EACCES';
    throw new StoreError(
      'NOT_ACCESSIBLE',
      `message store: data directory ${dir} is not readable and writable by this process (${code}); nothing was changed`,
      {
        cause: err,
        detail: `open: ${code}`,
      },
    );
  }
  const log = opts.log;
  // Scale-out backends (docs/operations.md): opened here, closed after the relay. Loaded only
  // when chosen, so a relay on SQLite alone never loads pg or ioredis.
  let store: MessageStore | undefined;
  if (opts.storeUrl !== undefined) {
    const { PgMessageStore } = await import('@latchkey/relay/postgres');
    store = await PgMessageStore.open({ url: opts.storeUrl });
  }
  let fanout: Fanout | undefined;
  if (opts.fanoutUrl !== undefined) {
    const { RedisFanout } = await import('@latchkey/relay/redis');
    fanout = new RedisFanout({
      url: opts.fanoutUrl,
      ...(log === undefined ? {} : { log: (e: object) => log(e) }),
    });
  }
  // Signed webhooks (docs/webhooks.md): with a PostgreSQL store, one outbox in that database
  // shared by every relay on it (each event delivered once, by whichever relay is alive), sealed
  // under the key file every relay shares; else this relay's own `<dataDir>/relay/webhooks.db`.
  const keyFile = opts.webhookKeyFile ?? join(dir, 'webhooks.db.key');
  let webhooks: WebhookService;
  try {
    webhooks = new WebhookService({
      outbox:
        opts.storeUrl !== undefined
          ? { url: opts.storeUrl, keyFile }
          : { path: join(dir, 'webhooks.db'), keyFile },
      delivery: { allowlist: opts.webhookAllowlist ?? [] },
      ...(log === undefined ? {} : { log: (e: object) => log(e) }),
    });
  } catch (err) {
    await Promise.allSettled([store?.close(), fanout?.close()]);
    throw err;
  }
  // The agent queue (docs/admin-api.md "Queue"): in `<dataDir>/relay/queue.db` for a relay on
  // SQLite; relays sharing PostgreSQL have no shared queue store yet (each keeps one in memory).
  let queue: SqliteQueueStore | undefined;
  try {
    queue =
      opts.storeUrl === undefined
        ? new SqliteQueueStore({ path: join(dir, 'queue.db') })
        : undefined;
  } catch (err) {
    await Promise.allSettled([store?.close(), fanout?.close(), webhooks.close()]);
    throw err;
  }
  const closeBackends = async (): Promise<void> => {
    await Promise.allSettled([store?.close(), fanout?.close(), webhooks.close(), queue?.close()]);
  };
  try {
    // A shared outbox checks its key here: a relay with another key file does not start.
    await webhooks.ready();
  } catch (err) {
    await closeBackends();
    throw err;
  }
  let relay: ReturnType<typeof createRelay>;
  try {
    relay = createRelay({
      store: store ?? {
        path: join(dir, 'messages.db'),
        synchronous: opts.durability === 'full' ? 'FULL' : 'NORMAL',
      },
      ...(fanout === undefined ? {} : { fanout }),
      webhooks,
      apiSecret: opts.apiSecret,
      ...(log === undefined ? {} : { log: (e: RelayLogEvent) => log(e) }),
      ...(opts.admission === undefined ? {} : { admission: opts.admission }),
      // Unset: LATCHKEY_RELAY_QUOTA_* (as `latchkey start` runs it), else the defaults.
      quota: opts.quota ?? quotaSettings({}, process.env),
      files: opts.files ?? fileSettings({}, process.env),
      ...(queue ? { queue } : {}),
      ...(opts.adminIpAllowlist === undefined ? {} : { adminIpAllowlist: opts.adminIpAllowlist }),
    });
  } catch (err) {
    await closeBackends();
    throw err;
  }
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => (closing ??= relay.close().finally(closeBackends));
  try {
    const { url, port } = await relay.listen({
      host: opts.host,
      port: opts.port,
      ...(tls ? { tls } : {}),
    });
    return { url, port, close };
  } catch (err) {
    await close();
    throw err;
  }
}
