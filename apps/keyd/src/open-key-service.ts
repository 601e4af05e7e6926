/**
 * The embedded key service: the internal key manager plus the HTTP service, over one data
 * directory (DESIGN.md "Key hierarchy": keys in a database of their own, apart from messages).
 *
 * Layout under `dataDir`:
 *   keys/                       0700
 *   keys/keys.db (-wal, -shm)   0600, wrapped content keys (internal adapter)
 *   keys/service-signing.key    0600, the certificate-signing key, wrapped by the master key
 *   keys/access.db              0600, membership and deny table, epoch dates
 *   keys/access-log.key         0600, HMAC key of the key access log (table in keys.db)
 *   keys/webhooks.db            webhook outbox (`key.rotated`, `contact.shredded`), when configured
 * The master key and API secret are the caller's (see resolveMasterKey, loadOrCreateSecretFile;
 * the CLI keeps them in `<dataDir>/master.key` and `<dataDir>/api-secret`).
 */
import { chmod, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { assertSecureListener } from '@latchkey/protocol';
import { deriveAdminKey } from '@latchkey/tokens';
import { EpochClock, KeyAccessLog, SqliteAccessStore, loadOrCreateSecret } from '@latchkey/keys';
import { WebhookService, type WebhookLogEvent } from '@latchkey/webhooks';
import { openChosenKeyManager, type KeyManagerChoice } from './key-manager-choice.ts';
import { KeyPolicy, startKeySweep } from './key-policy.ts';
import { registerRewrapRoute } from './master-key-rotation.ts';
import { startKeyService, type KeyService, type KeyServiceOptions } from './server.ts';
import { loadOrCreateServiceSigningKey } from './signing-key.ts';
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
   * pointed at it. Any wrap-model key manager; absent: the SQLite file.
   */
  keyStoreUrl?: string;
  /** Rotate an epoch older than this at the next fetch of the current key (ms; default never). */
  rotateAfterMs?: number;
  /** Clients ask for a rotation after this many messages of one epoch (default never). */
  rotateAfterMessages?: number;
  /** A requested rotation needs the epoch to be at least this old (ms, default 60 s). */
  minRotateAgeMs?: number;
  /** How often expired contacts have their keys destroyed (ms, default 60 s). */
  keySweepMs?: number;
  /**
   * Signed webhooks (docs/webhooks.md): a durable outbox in `<dataDir>/keys/webhooks.db` for
   * `key.rotated` and `contact.shredded`, managed under /admin/v1/webhooks. Absent: none.
   * `allowlist`: IPs/CIDR ranges endpoints may reach although private or loopback.
   */
  webhooks?: { allowlist?: readonly string[]; log?: (e: WebhookLogEvent) => void };
}

/** Paths of the key service's files under a data directory. */
export function keyServicePaths(dataDir: string): {
  dir: string;
  db: string;
  signingKey: string;
  access: string;
  accessLogKey: string;
  webhooks: string;
} {
  const dir = join(dataDir, 'keys');
  return {
    dir,
    db: join(dir, 'keys.db'),
    signingKey: join(dir, 'service-signing.key'),
    access: join(dir, 'access.db'),
    // The access log's HMAC key: a file of its own, so a master-key rewrap keeps the chain valid.
    accessLogKey: join(dir, 'access-log.key'),
    webhooks: join(dir, 'webhooks.db'),
  };
}

/**
 * Opens the chosen key manager (internal by default), the access log and the signing key under
 * `dataDir` and starts the service, with a periodic sweep that shreds expired contacts' keys.
 * `close()` stops the server, then closes the key store.
 * @throws LatchkeyError KEY_UNAVAILABLE when the master key does not match the stored keys or a
 *   file is unusable; RangeError for malformed options; the listen error when the port is taken.
 */
export async function openKeyService(
  opts: OpenKeyServiceOptions,
): Promise<KeyService & { sweepExpired(): Promise<string[]> }> {
  assertSecureListener('key service', opts.host, { tls: opts.tls !== undefined, insecure: opts.insecure === true });
  const tls = opts.tls && { cert: await readFile(opts.tls.certFile), key: await readFile(opts.tls.keyFile) };
  const paths = keyServicePaths(opts.dataDir);
  if (opts.keyStoreUrl !== undefined) {
    // The SQLite key store creates `keys/` 0700; with the keys on PostgreSQL the access table,
    // access log and signing key still live there.
    if ((await mkdir(paths.dir, { recursive: true, mode: 0o700 })) !== undefined && process.platform !== 'win32') {
      await chmod(paths.dir, 0o700);
    }
  }
  const keyManager = await openChosenKeyManager(opts.keyManager ?? { kind: 'internal' }, paths.db, opts.masterKey, opts.keyStoreUrl);
  let signingKey: Uint8Array | undefined;
  // A copy the online master-key rotation needs (the caller may zero its own).
  const master = { key: Uint8Array.from(opts.masterKey) };
  let access: SqliteAccessStore | undefined;
  let accessLog: KeyAccessLog | undefined;
  let clock: EpochClock | undefined;
  let webhooks: WebhookService | undefined;
  try {
    // Who may receive keys: membership and deny table, in a file of its own (keys/access.db).
    access = new SqliteAccessStore({
      path: paths.access,
      ...(opts.maxParticipants === undefined ? {} : { maxParticipants: opts.maxParticipants }),
      ...(opts.contactTtlMs === undefined ? {} : { contactTtlMs: opts.contactTtlMs }),
    });
    signingKey = (await loadOrCreateServiceSigningKey(paths.signingKey, opts.masterKey)).secretKey;
    const logKey = loadOrCreateSecret(paths.accessLogKey, 32).secret;
    accessLog = new KeyAccessLog({ path: paths.db, key: logKey });
    logKey.fill(0);
    clock = new EpochClock({ path: paths.access });
    // The outbox sits next to the key files (created above, 0700).
    const hookLog = opts.webhooks?.log;
    webhooks =
      opts.webhooks &&
      new WebhookService({
        outbox: { path: paths.webhooks },
        delivery: { allowlist: opts.webhooks.allowlist ?? [] },
        ...(hookLog === undefined ? {} : { log: hookLog }),
      });
    const policy = new KeyPolicy({
      keyManager,
      accessLog,
      clock,
      access,
      ...(webhooks === undefined ? {} : { webhooks }),
      ...(opts.rotateAfterMs === undefined ? {} : { rotateAfterMs: opts.rotateAfterMs }),
      ...(opts.rotateAfterMessages === undefined ? {} : { rotateAfterMessages: opts.rotateAfterMessages }),
      ...(opts.minRotateAgeMs === undefined ? {} : { minRotateAgeMs: opts.minRotateAgeMs }),
    });
    const service = await startKeyService({
      host: opts.host,
      port: opts.port,
      ...(opts.apiSecret === undefined ? {} : { apiSecret: opts.apiSecret }),
      keyManager,
      signingKey,
      access,
      policy,
      ...(opts.tokenPublicKey === undefined ? {} : { tokenPublicKey: opts.tokenPublicKey }),
      ...(opts.adminKeys === undefined ? {} : { adminKeys: opts.adminKeys }),
      ...(opts.adminIpAllowlist === undefined ? {} : { adminIpAllowlist: opts.adminIpAllowlist }),
      ...(opts.certTtlSeconds === undefined ? {} : { certTtlSeconds: opts.certTtlSeconds }),
      ...(opts.logger === undefined ? {} : { logger: opts.logger }),
      ...(opts.allowedOrigins === undefined ? {} : { allowedOrigins: opts.allowedOrigins }),
      ...(tls ? { tls } : {}),
      extraRoutes: (app) => {
        const adminKeys = opts.adminKeys ?? (opts.apiSecret === undefined ? [] : [deriveAdminKey(opts.apiSecret)]);
        if (adminKeys.length === 0) return;
        registerRewrapRoute(app, {
          keyManager,
          internal: (opts.keyManager?.kind ?? 'internal') === 'internal',
          master,
          signingKeyPath: paths.signingKey,
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
    const key = signingKey;
    const accessStore = access;
    const log = accessLog;
    const epochs = clock;
    const hooks = webhooks;
    // Key retention: contacts past expiry have their keys destroyed (crypto-shredding).
    const sweeper = startKeySweep({ access: accessStore, policy, everyMs: opts.keySweepMs ?? 60_000 });
    let closing: Promise<void> | undefined;
    return {
      ...service,
      sweepExpired: sweeper.sweep,
      close: () =>
        (closing ??= (async () => {
          sweeper.stop();
          try {
            await service.close();
          } finally {
            await hooks?.close();
            await keyManager.close();
            accessStore.close();
            log.close();
            epochs.close();
            key.fill(0);
            master.key.fill(0);
          }
        })()),
    };
  } catch (err) {
    signingKey?.fill(0);
    master.key.fill(0);
    access?.close();
    accessLog?.close();
    clock?.close();
    await webhooks?.close();
    await keyManager.close();
    throw err;
  }
}
