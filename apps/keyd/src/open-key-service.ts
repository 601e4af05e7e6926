/**
 * The embedded key service: the internal key manager plus the HTTP service, over one data
 * directory (DESIGN.md "Key hierarchy": keys in a database of their own, apart from messages),
 * laid out as paths.ts describes: keys, signing key, access table, access-log key, webhook
 * outbox.
 * The access log also streams to a syslog collector over TLS when `syslog` is given
 * (access-stream.ts, access-syslog.ts; cursors in keys.db, docs/siem.md).
 * The master key and API secret are the caller's (see resolveMasterKey, loadOrCreateSecretFile;
 * the CLI keeps them in `<dataDir>/master.key` and `<dataDir>/api-secret`). When the master key
 * is the one in `<dataDir>/master.key`, completing a shred replaces that file (shred-completion.ts).
 */
import { chmod, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { assertSecureListener } from '@latchkey/protocol';
import { deriveAdminKey } from '@latchkey/tokens';
import { WebhookService, type WebhookLogEvent } from '@latchkey/webhooks';
import {
  checkKeyManagerAtStart,
  formatKmFailure,
  kekGenerationsOf,
  openChosenKeyManager,
  type KeyManagerChoice,
} from './key-manager-choice.ts';
import { AccessLogTailer, webhookAccessSink } from './access-stream.ts';
import { SyslogAccessSink } from './access-syslog.ts';
import { DegradedKeyCache } from './degraded-cache.ts';
import { formatDegradedState } from './degraded-status.ts';
import { KeyPolicy } from './key-policy.ts';
import { startKeySweep } from './key-sweep.ts';
import {
  internalGenerations,
  masterKeyFileOf,
  openInternalRecovering,
  registerRewrapRoute,
} from './master-key-rotation.ts';
import {
  SHRED_COMPLETE_EVERY_MS,
  registerShredCompleteRoute,
  startShredCompleter,
} from './shred-completion.ts';
import { startKeyService, type KeyService, type KeyServiceOptions } from './server.ts';
import { openSharedState, openSqliteState, type ServiceState } from './service-state.ts';
import { keyServicePaths } from './paths.ts';
import { registerWebhookRoutes } from './webhooks-routes.ts';

export interface OpenKeyServiceOptions {
  dataDir: string;
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** HS256 token secret (dev default); `tokenPublicKey` for EdDSA tokens. */
  apiSecret?: Uint8Array;
  tokenPublicKey?: KeyServiceOptions['tokenPublicKey'];
  /** Admin API keys (default: derived from apiSecret). */
  adminKeys?: KeyServiceOptions['adminKeys'];
  adminIpAllowlist?: readonly string[];
  /** Active participants per contact (default 10). */
  maxParticipants?: number;
  /** Lifetime of a new contact in ms (default 30 days). */
  contactTtlMs?: number;
  /** 32-byte master key; content keys and the signing key are wrapped under keys derived from it. */
  masterKey: Uint8Array;
  certTtlSeconds?: number;
  /** Hand keys out unsealed over plain HTTP too (server.ts `allowPlainKeyDelivery`; default: only with TLS). */
  allowPlainKeyDelivery?: boolean;
  logger?: KeyServiceOptions['logger'];
  allowedOrigins?: string[];
  /** PEM certificate and key files: serve https:// instead of http://. */
  tls?: { certFile: string; keyFile: string };
  /** Allow plain http:// on a non-loopback address (TLS terminated in front). */
  insecure?: boolean;
  /** Which key manager holds the content keys (default internal, under `masterKey`). */
  keyManager?: KeyManagerChoice;
  /**
   * `postgres://...`: keep the wrapped content keys in this PostgreSQL database (of its own,
   * never the relay's messages database) instead of `keys/keys.db`, shared by every key service
   * pointed at it, and with them the service's own state (membership, owed rotations, the key
   * access log and its stream cursors, epoch dates, the signing key and the log key; issue 17),
   * so that any number of key services run active-active behind a balancer. Any wrap-model key
   * manager; absent: the SQLite files.
   */
  keyStoreUrl?: string;
  /**
   * Degraded mode (docs/key-management.md "Degraded mode"): while the key manager is unreachable,
   * serve content keys this process already unwrapped for at most this long after it fetched
   * them (ms; default 0: off, every hand-out needs the key manager).
   */
  keyCacheTtlMs?: number;
  /** Rotate an epoch older than this at the next fetch of the current key (ms; default never). */
  rotateAfterMs?: number;
  /** Clients ask for a rotation after this many messages of one epoch (default never). */
  rotateAfterMessages?: number;
  /** A requested rotation needs the epoch to be at least this old (ms, default 60 s). */
  minRotateAgeMs?: number;
  /** How often expired contacts have their keys destroyed (ms, default 60 s). */
  keySweepMs?: number;
  /**
   * How often pending shreds are completed (ms, default 1 h; 0: only on request): the KEK
   * generation that shredded keys were wrapped under is retired (docs/key-management.md
   * "Completing a shred"). Until then a key backup taken before a shred still opens with it.
   */
  shredCompleteEveryMs?: number;
  /**
   * The file the master key came from, which completing a shred replaces (default
   * `<dataDir>/master.key` when it holds `masterKey`; otherwise the master key came from the
   * environment, and a completion needs a new one given to `latchkey shred --complete`).
   */
  masterKeyFile?: string;
  /** Lines of the scheduled shred completion (default: standard output). */
  log?: (line: string) => void;
  /**
   * Lines about an external key manager (default: standard error): each failure with its
   * status and reason (`key manager: OP failed: HTTP 401 AUTH_INVALID: ...`), and the start-up
   * self-check's warning when it is down. Never a secret or key.
   */
  keyManagerLog?: (line: string) => void;
  /**
   * Signed webhooks (docs/webhooks.md): a durable outbox in `<dataDir>/keys/webhooks.db` for
   * `key.rotated` and `contact.shredded`, managed under /admin/v1/webhooks. Absent: none.
   * `allowlist`: IPs/CIDR ranges endpoints may reach although private or loopback.
   */
  webhooks?: { allowlist?: readonly string[]; log?: (e: WebhookLogEvent) => void };
  /**
   * The key access log as RFC 5424 syslog over TLS (RFC 5425) to a collector (docs/siem.md):
   * `url` `tls://host:port`, `ca` the PEM its certificate must chain to (the only CA trusted),
   * `servername` the name it must carry (default the URL's host), `hostname` the messages'
   * HOSTNAME (default this machine's), `settleMs` how long a written record waits on a live
   * connection before it counts as delivered (default 2 s).
   */
  syslog?: {
    url: string;
    ca: string | Buffer;
    servername?: string;
    hostname?: string;
    settleMs?: number;
  };
  /**
   * The access streams (webhooks when `webhooks` is given, syslog when `syslog` is): their slow
   * poll (ms, default 5 s) and where their state lines go (default: standard error).
   */
  accessStreams?: { pollMs?: number; log?: (line: string) => void };
}

/**
 * Opens the chosen key manager (internal by default), the access log and the signing key under
 * `dataDir` and starts the service, with a periodic sweep that shreds expired contacts' keys.
 * `close()` stops the server, then closes the key store.
 * @throws LatchkeyError KEY_UNAVAILABLE when the master key does not match the stored keys or a
 *   file is unusable; RangeError for malformed options; the listen error when the port is taken.
 */
export async function openKeyService(opts: OpenKeyServiceOptions): Promise<
  KeyService & {
    sweepExpired(): Promise<string[]>;
    /** The access log's streams by name (`webhooks`, `syslog`), each with its cursor. */
    accessStreams: ReadonlyMap<string, AccessLogTailer>;
  }
> {
  assertSecureListener('key service', opts.host, {
    tls: opts.tls !== undefined,
    insecure: opts.insecure === true,
  });
  const tls = opts.tls && {
    cert: await readFile(opts.tls.certFile),
    key: await readFile(opts.tls.keyFile),
  };
  const paths = keyServicePaths(opts.dataDir);
  // The SQLite key store creates `keys/` 0700, but with the keys on PostgreSQL or at the
  // enterprise (the http store model) nothing else would: the access table, access log and
  // signing key still live there. A new data directory must work with every key manager.
  if (
    (await mkdir(paths.dir, { recursive: true, mode: 0o700 })) !== undefined &&
    process.platform !== 'win32'
  ) {
    await chmod(paths.dir, 0o700);
  }
  const choice = opts.keyManager ?? { kind: 'internal' };
  // A copy the online master-key rotation and shred completion need (the caller may zero its own).
  const master = { key: Uint8Array.from(opts.masterKey) };
  const masterFile =
    opts.masterKeyFile ?? masterKeyFileOf(join(opts.dataDir, 'master.key'), master.key);
  const kmLog = opts.keyManagerLog ?? ((line) => void process.stderr.write(`${line}\n`));
  const open = (k: Uint8Array) =>
    openChosenKeyManager(choice, paths.db, k, opts.keyStoreUrl, {
      onFailure: (f) => kmLog(formatKmFailure(f)),
    });
  let keyManager;
  try {
    // The internal store may be under master.key.new: a rotation that stopped half-way.
    keyManager =
      choice.kind === 'internal'
        ? await openInternalRecovering(open, {
            master,
            masterFile,
            signingKeyPath: paths.signingKey,
          })
        : await open(master.key);
  } catch (err) {
    master.key.fill(0);
    throw err;
  }
  let state: ServiceState | undefined;
  let served: DegradedKeyCache | undefined;
  let webhooks: WebhookService | undefined;
  let stopCompleter: (() => void) | undefined;
  const streams = new Map<string, AccessLogTailer>();
  try {
    // Refused signature or client: stop here, naming the cause; down: a warning only.
    await checkKeyManagerAtStart(keyManager, choice, kmLog);
    // Degraded mode: keys already unwrapped serve on while the key manager is unreachable, for
    // at most keyCacheTtlMs (default off). Every rotation and shred goes through it, so it drops
    // what they replace; the shred completer and rewrap need the key manager itself.
    served = new DegradedKeyCache(keyManager, {
      ...(opts.keyCacheTtlMs === undefined ? {} : { ttlMs: opts.keyCacheTtlMs }),
      onState: (c) => kmLog(formatDegradedState(c)),
    });
    state =
      opts.keyStoreUrl === undefined
        ? await openSqliteState(paths, master.key, opts)
        : await openSharedState(opts.keyStoreUrl, paths, master.key, opts);
    const { access, accessLog, clock, signingKey } = state;
    // The outbox sits next to the key files (created above, 0700).
    const hookLog = opts.webhooks?.log;
    webhooks =
      opts.webhooks &&
      new WebhookService({
        // A cluster: one outbox in the key database, each event delivered once by whichever key
        // service is alive, its secrets sealed under the key the key services share.
        outbox:
          state.outboxKey === undefined || opts.keyStoreUrl === undefined
            ? { path: paths.webhooks }
            : { url: opts.keyStoreUrl, secretKey: state.outboxKey },
        delivery: { allowlist: opts.webhooks.allowlist ?? [] },
        ...(hookLog === undefined ? {} : { log: hookLog }),
      });
    // A database, schema or key problem of the outbox stops the start, named, not a log line later.
    await webhooks?.ready();
    const policy = new KeyPolicy({
      keyManager: served,
      accessLog,
      clock,
      access,
      ...(state.locks === undefined ? {} : { locks: state.locks }),
      ...(webhooks === undefined ? {} : { webhooks }),
      ...(opts.rotateAfterMs === undefined ? {} : { rotateAfterMs: opts.rotateAfterMs }),
      ...(opts.rotateAfterMessages === undefined
        ? {}
        : { rotateAfterMessages: opts.rotateAfterMessages }),
      ...(opts.minRotateAgeMs === undefined ? {} : { minRotateAgeMs: opts.minRotateAgeMs }),
    });
    // The access log to the webhook outbox and the syslog collector, each from its own cursor.
    const streamLog =
      opts.accessStreams?.log ?? ((line) => void process.stderr.write(`keyd: ${line}\n`));
    const chained = accessLog;
    const tail = (
      sink: ConstructorParameters<typeof AccessLogTailer>[0]['sink'],
      batch: number,
    ): void => {
      streams.set(
        sink.name,
        new AccessLogTailer({
          log: chained,
          sink,
          batch,
          report: streamLog,
          ...(state?.leadership === undefined ? {} : { leadership: state.leadership }),
          ...(opts.accessStreams?.pollMs === undefined
            ? {}
            : { pollMs: opts.accessStreams.pollMs }),
        }),
      );
    };
    // Each webhook event is one synced outbox transaction: a backlog goes 32 at a time, so key
    // hand-outs are never held up for long behind it.
    if (webhooks) tail(webhookAccessSink(webhooks, accessLog.algorithm), 32);
    if (opts.syslog) {
      const sl = opts.syslog;
      tail(
        new SyslogAccessSink({
          url: sl.url,
          ca: sl.ca,
          alg: accessLog.algorithm,
          report: streamLog,
          ...(sl.servername === undefined ? {} : { servername: sl.servername }),
          ...(sl.hostname === undefined ? {} : { hostname: sl.hostname }),
          ...(sl.settleMs === undefined ? {} : { settleMs: sl.settleMs }),
        }),
        500,
      );
    }
    const completer = startShredCompleter({
      keyManager,
      generations: (supplied) =>
        choice.kind === 'internal'
          ? internalGenerations({
              master,
              masterFile,
              signingKeyPath: paths.signingKey,
              ...(state?.rewrap === undefined ? {} : { rewrapShared: state.rewrap }),
              ...(supplied === undefined ? {} : { supplied }),
            })
          : kekGenerationsOf(choice),
      everyMs: opts.shredCompleteEveryMs ?? SHRED_COMPLETE_EVERY_MS,
      log: opts.log ?? ((line) => void process.stdout.write(`${line}\n`)),
    });
    stopCompleter = completer.stop;
    const service = await startKeyService({
      host: opts.host,
      port: opts.port,
      ...(opts.apiSecret === undefined ? {} : { apiSecret: opts.apiSecret }),
      keyManager: served,
      keyCache: served,
      signingKey,
      access,
      policy,
      ...(opts.tokenPublicKey === undefined ? {} : { tokenPublicKey: opts.tokenPublicKey }),
      ...(opts.adminKeys === undefined ? {} : { adminKeys: opts.adminKeys }),
      ...(opts.adminIpAllowlist === undefined ? {} : { adminIpAllowlist: opts.adminIpAllowlist }),
      ...(opts.certTtlSeconds === undefined ? {} : { certTtlSeconds: opts.certTtlSeconds }),
      ...(opts.allowPlainKeyDelivery === undefined
        ? {}
        : { allowPlainKeyDelivery: opts.allowPlainKeyDelivery }),
      ...(opts.logger === undefined ? {} : { logger: opts.logger }),
      ...(opts.allowedOrigins === undefined ? {} : { allowedOrigins: opts.allowedOrigins }),
      ...(tls ? { tls } : {}),
      extraRoutes: (app) => {
        const adminKeys =
          opts.adminKeys ?? (opts.apiSecret === undefined ? [] : [deriveAdminKey(opts.apiSecret)]);
        if (adminKeys.length === 0) return;
        registerRewrapRoute(app, {
          keyManager,
          internal: choice.kind === 'internal',
          master,
          signingKeyPath: paths.signingKey,
          ...(state?.rewrap === undefined ? {} : { rewrapShared: state.rewrap }),
          keys: adminKeys,
          ...(opts.adminIpAllowlist === undefined ? {} : { ipAllowlist: opts.adminIpAllowlist }),
        });
        registerShredCompleteRoute(app, {
          completer,
          keys: adminKeys,
          ...(opts.adminIpAllowlist === undefined ? {} : { ipAllowlist: opts.adminIpAllowlist }),
        });
        if (webhooks) {
          registerWebhookRoutes(app, {
            webhooks,
            keys: adminKeys,
            ...(opts.adminIpAllowlist === undefined ? {} : { ipAllowlist: opts.adminIpAllowlist }),
            ...(hookLog === undefined ? {} : { log: hookLog }),
          });
        }
      },
    });
    const opened = state;
    const hooks = webhooks;
    const manager = served;
    // Key retention: contacts past expiry have their keys destroyed (crypto-shredding).
    const sweeper = startKeySweep({
      access,
      policy,
      everyMs: opts.keySweepMs ?? 60_000,
    });
    let closing: Promise<void> | undefined;
    return {
      ...service,
      sweepExpired: sweeper.sweep,
      accessStreams: streams,
      close: () =>
        (closing ??= (async () => {
          sweeper.stop();
          completer.stop();
          try {
            await service.close();
          } finally {
            for (const t of streams.values()) await t.close();
            await hooks?.close();
            await manager.close();
            await opened.close();
            master.key.fill(0);
          }
        })()),
    };
  } catch (err) {
    stopCompleter?.();
    for (const t of streams.values()) await t.close();
    master.key.fill(0);
    await state?.close();
    await webhooks?.close();
    if (served) await served.close();
    else await keyManager.close();
    throw err;
  }
}
