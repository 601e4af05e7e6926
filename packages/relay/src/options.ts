/**
 * The relay's options (RelayOptions, the contract of createRelay) and their resolution: defaults
 * filled in, limits validated, the store opened when given as a path, the contact store, token
 * verifier, retention and admin keys chosen. The rest of the relay reads the resolved
 * RelayConfig, never the raw options.
 */
import { DEFAULT_CONTACT_TTL_MS, DEFAULT_MAX_PARTICIPANTS, LIMITS } from '@latchkey/protocol';
import {
  TOKEN_CLOCK_SKEW_SECONDS,
  createTokenVerifier,
  deriveAdminKey,
  type AdminKey,
  type TokenVerifier,
  type TokenVerifierOptions,
} from '@latchkey/tokens';
import type { WebhookService } from '@latchkey/webhooks';
import type { AdmissionOptions } from './admission.ts';
import {
  KEEP_CIPHERTEXT,
  isContactStore,
  type ContactPolicy,
  type ContactStore,
  type RetentionHook,
} from './contacts.ts';
import type { Fanout } from './fanout.ts';
import { DEFAULT_RATE_LIMIT, TokenBucket, type RateLimitOptions } from './limiter.ts';
import { resolveQuota, type Quota } from './quota.ts';
import { deleteCiphertext, sqliteShredder, type CiphertextShredder } from './shred.ts';
import type { MessageStore } from './message-store.ts';
import { SqliteMessageStore } from './store.ts';
import type { BlobStore } from './files/blob-store.ts';
import { resolveFileLimits, type FileLimits, type FileOptions } from './files/config.ts';
import type { QueueStore } from './queue-store.ts';
import { DirBlobStore } from './files/dir-blob-store.ts';
import { isFileMetaRunner, type FileMetaRunner } from './files/meta.ts';

/** A structured log event. Carries codes, counts and opaque ids only. */
export interface RelayLogEvent {
  event: string;
  [field: string]: string | number | boolean | undefined;
}

export interface RelayOptions {
  /** A store instance (the caller keeps ownership) or a SQLite file path (the relay owns it). */
  store: MessageStore | { path: string; synchronous?: 'NORMAL' | 'FULL' };
  /**
   * HS256 secret that participant tokens are signed with (at least 32 bytes), the dev default.
   * Give `tokenPublicKey` instead (or as well) for EdDSA tokens.
   */
  apiSecret?: Uint8Array;
  /** Ed25519 public key (KeyObject, SPKI PEM or JWK) that verifies EdDSA participant tokens. */
  tokenPublicKey?: TokenVerifierOptions['ed25519PublicKey'];
  /**
   * Contact lifecycle and membership (default: `store` when it implements ContactStore, as the
   * SQLite store does).
   */
  contacts?: ContactStore;
  /** Active participants per contact (default 10). */
  maxParticipants?: number;
  /** Lifetime of a new contact in ms (default 30 days). */
  contactTtlMs?: number;
  /** How often expired contacts are swept (ms, default 60 s). */
  expirySweepMs?: number;
  /**
   * What happens to an expired contact's data (default: its ciphertext is deleted through
   * `shredder`; pass KEEP_CIPHERTEXT to keep it).
   */
  retention?: RetentionHook;
  /**
   * Deletes a contact's stored ciphertext (admin shred, default retention). Default: over the
   * SQLite file when `store` is a path; none for a store instance (then shred answers
   * NOT_FOUND and retention keeps the ciphertext unless `retention` says otherwise).
   */
  shredder?: CiphertextShredder;
  /**
   * API keys of the admin API (`/admin/v1`). Default: the key derived from `apiSecret`
   * (deriveAdminKey); with neither, the admin API answers 404.
   */
  adminKeys?: AdminKey[];
  /** IPs/CIDR ranges allowed to reach the admin API (default: loopback only). */
  adminIpAllowlist?: readonly string[];
  /** Largest incoming frame in bytes (default LIMITS.maxFrameBytes). */
  maxFrameBytes?: number;
  /** Time a new connection has to authenticate (default LIMITS.authTimeoutSeconds * 1000). */
  authTimeoutMs?: number;
  /** Per-connection frame rate limit (default 100/s, burst 200). */
  rateLimit?: RateLimitOptions;
  /**
   * Stored messages and bytes per contact and per participant (quota.ts; each field defaults
   * to DEFAULT_QUOTA's). Enforced by the store, whichever it is, atomically with the append.
   */
  quota?: Partial<Quota>;
  /**
   * Bytes of incoming frames per second one participant may send, over all its connections to
   * this relay (default 128 KiB/s, burst 1 MiB; the burst is raised to maxFrameBytes when
   * lower). Counted before a frame is parsed, so a flooding participant costs little CPU.
   */
  participantByteRate?: RateLimitOptions;
  /** Receives structured events; never tokens, ciphertext or envelope content. */
  log?: (event: RelayLogEvent) => void;
  /** Interval of ws-level pings; a socket silent for two intervals is terminated. Default 30 s. */
  heartbeatMs?: number;
  /** Protocol errors a connection may make before it is closed with 1008. Default 10. */
  maxProtocolErrors?: number;
  /** Origin and IP allowlists, connections and frame rate per client IP (admission.ts). */
  admission?: AdmissionOptions;
  /**
   * Fan-out between relays (fanout.ts; the caller keeps ownership). Default: in-process, for a
   * single relay. Several relays over one store need a shared one (RedisFanout).
   */
  fanout?: Fanout;
  /** IPs/CIDR ranges allowed to read `/metrics` (default: loopback only). */
  metricsIpAllowlist?: readonly string[];
  /** Signed webhooks (docs/webhooks.md; the caller keeps ownership): events and /admin/v1/webhooks. */
  webhooks?: WebhookService;
  /**
   * Open connections in all on the server `listen` starts (default 10,000); its HTTP requests
   * (before an upgrade) get 10 s for their headers and 20 s in all, so half-sent requests do not
   * hold file descriptors.
   */
  maxConnections?: number;
  /**
   * Encrypted file uploads (`/v1/files`, docs/protocol.md "Files (HTTP)"): limits and where the
   * blobs live (files/config.ts). Default: on, with a directory next to the SQLite file, or the
   * PostgreSQL store's own table; off (404) for a store that keeps no file metadata. `false`
   * turns it off.
   */
  files?: FileOptions | false;
  /**
   * The agent queue's store (queue-store.ts; docs/admin-api.md "Queue"). Default: one in memory,
   * lost on restart; `startRelay` keeps it in `relay/queue.db`.
   */
  queue?: QueueStore;
}

/** Default of RelayOptions.maxConnections. */
export const DEFAULT_RELAY_MAX_CONNECTIONS = 10_000;

/** TLS material for `listen` (PEM). */
export interface TlsOptions {
  cert: string | Buffer;
  key: string | Buffer;
}

/** Seconds of clock skew token verification allows; the token expiry timer allows the same. */
export const CLOCK_TOLERANCE_SECONDS = TOKEN_CLOCK_SKEW_SECONDS;

/** Default per-participant inbound byte rate: ample for people typing, tight for a flood. */
const DEFAULT_PARTICIPANT_BYTE_RATE: RateLimitOptions = {
  perSecond: 128 * 1024,
  burst: 1024 * 1024,
};

/** RelayOptions with every default filled in and every limit checked. */
export interface RelayConfig {
  verifier: TokenVerifier;
  policy: ContactPolicy;
  expirySweepMs: number;
  shredder: CiphertextShredder | undefined;
  retention: RetentionHook;
  maxFrameBytes: number;
  authTimeoutMs: number;
  heartbeatMs: number;
  maxProtocolErrors: number;
  /** Per-connection frame rate. */
  rateLimit: RateLimitOptions;
  quota: Quota;
  /** Per-participant inbound bytes (burst at least maxFrameBytes). */
  byteRate: RateLimitOptions;
  store: MessageStore;
  /** True when the relay opened `store` from a path (and closes it). */
  ownsStore: boolean;
  contacts: ContactStore;
  adminKeys: AdminKey[];
  /** History replies stop growing past this many bytes (`more` tells the client to page on). */
  maxHistoryBytes: number;
  /** The caller's logger made safe: a throwing logger never takes the relay down. */
  log: (event: RelayLogEvent) => void;
  /** The file API, when on. */
  files: ResolvedFiles | undefined;
  /** True unless retention keeps ciphertext: an expired contact's blobs are deleted too. */
  deleteFilesOnExpiry: boolean;
}

/** The file API's resolved settings. */
export interface ResolvedFiles {
  meta: FileMetaRunner;
  blobs: BlobStore;
  /** True when the relay made `blobs`. */
  ownsBlobs: boolean;
  limits: FileLimits;
  rates: Pick<FileOptions, 'participantRate' | 'ipRate'>;
}

/** Where the blobs go: the options' store, `dir`, the PostgreSQL store's table, or next to the SQLite file. */
function resolveFiles(
  opts: FileOptions | false | undefined,
  store: MessageStore,
): ResolvedFiles | undefined {
  if (opts === false || !isFileMetaRunner(store)) return undefined;
  const o = opts ?? {};
  const limits = resolveFileLimits(o);
  const rates = {
    ...(o.participantRate ? { participantRate: o.participantRate } : {}),
    ...(o.ipRate ? { ipRate: o.ipRate } : {}),
  };
  new TokenBucket(o.participantRate ?? { perSecond: 1, burst: 1 });
  new TokenBucket(o.ipRate ?? { perSecond: 1, burst: 1 });
  if (o.blobs) return { meta: store, blobs: o.blobs, ownsBlobs: false, limits, rates };
  if (o.dir !== undefined)
    return { meta: store, blobs: new DirBlobStore(o.dir), ownsBlobs: true, limits, rates };
  const pg = store as Partial<{ blobStore(): BlobStore }>;
  if (typeof pg.blobStore === 'function')
    return { meta: store, blobs: pg.blobStore(), ownsBlobs: true, limits, rates };
  const path = (store as Partial<{ path: string }>).path;
  if (typeof path === 'string' && path !== '' && path !== ':memory:' && !path.startsWith('file:'))
    return {
      meta: store,
      blobs: new DirBlobStore(`${path}.files`),
      ownsBlobs: true,
      limits,
      rates,
    };
  return undefined;
}

function isStore(s: RelayOptions['store']): s is MessageStore {
  return typeof (s as Partial<MessageStore>).appendBatch === 'function';
}

function positiveIntegers(values: Record<string, number>): void {
  for (const [name, n] of Object.entries(values)) {
    if (!Number.isSafeInteger(n) || n <= 0)
      throw new RangeError(`${name} must be a positive integer`);
  }
}

/**
 * Fills in defaults and validates; opens the SQLite store when `store` is a path.
 * @throws RangeError on an API secret shorter than 32 bytes, a non-positive limit or quota, or
 *   no ContactStore.
 * @throws LatchkeyError UNAVAILABLE when `store.path` cannot be opened.
 */
export function resolveOptions(opts: RelayOptions): RelayConfig {
  if (
    opts.apiSecret !== undefined &&
    (!(opts.apiSecret instanceof Uint8Array) || opts.apiSecret.length < 32)
  ) {
    throw new RangeError('apiSecret must be at least 32 bytes');
  }
  const verifier = createTokenVerifier({
    ...(opts.apiSecret === undefined ? {} : { hs256Secret: opts.apiSecret }),
    ...(opts.tokenPublicKey === undefined ? {} : { ed25519PublicKey: opts.tokenPublicKey }),
    clockToleranceSeconds: CLOCK_TOLERANCE_SECONDS,
  });
  const policy: ContactPolicy = {
    maxParticipants: opts.maxParticipants ?? DEFAULT_MAX_PARTICIPANTS,
    contactTtlMs: opts.contactTtlMs ?? DEFAULT_CONTACT_TTL_MS,
  };
  const expirySweepMs = opts.expirySweepMs ?? 60_000;
  positiveIntegers({ ...policy, expirySweepMs });
  const shredder =
    opts.shredder ?? (isStore(opts.store) ? undefined : sqliteShredder(opts.store.path));
  const retention = opts.retention ?? (shredder ? deleteCiphertext(shredder) : KEEP_CIPHERTEXT);
  const maxFrameBytes = opts.maxFrameBytes ?? LIMITS.maxFrameBytes;
  const authTimeoutMs = opts.authTimeoutMs ?? LIMITS.authTimeoutSeconds * 1000;
  const heartbeatMs = opts.heartbeatMs ?? 30_000;
  const maxProtocolErrors = opts.maxProtocolErrors ?? 10;
  const rateLimit = opts.rateLimit ?? DEFAULT_RATE_LIMIT;
  positiveIntegers({ maxFrameBytes, authTimeoutMs, heartbeatMs });
  if (!Number.isSafeInteger(maxProtocolErrors) || maxProtocolErrors < 0) {
    throw new RangeError('maxProtocolErrors must be a non-negative integer');
  }
  new TokenBucket(rateLimit); // validates the options early
  const quota = resolveQuota(opts.quota);
  const byteRateOpt = opts.participantByteRate ?? DEFAULT_PARTICIPANT_BYTE_RATE;
  const byteRate: RateLimitOptions = {
    ...byteRateOpt,
    burst: Math.max(byteRateOpt.burst, maxFrameBytes),
  };
  new TokenBucket(byteRate);
  const ownsStore = !isStore(opts.store);
  const store: MessageStore = isStore(opts.store)
    ? opts.store
    : new SqliteMessageStore({
        path: opts.store.path,
        contactTtlMs: policy.contactTtlMs,
        ...(opts.store.synchronous === undefined ? {} : { synchronous: opts.store.synchronous }),
      });
  const contacts: ContactStore =
    opts.contacts ??
    (isContactStore(store)
      ? store
      : (() => {
          if (ownsStore) void store.close();
          throw new RangeError(
            'a ContactStore is required: pass `contacts`, or a store that implements it',
          );
        })());
  let files: ResolvedFiles | undefined;
  try {
    files = resolveFiles(opts.files, store);
  } catch (err) {
    if (ownsStore) void store.close();
    throw err;
  }
  const adminKeys =
    opts.adminKeys ?? (opts.apiSecret === undefined ? [] : [deriveAdminKey(opts.apiSecret)]);
  const log = (event: RelayLogEvent): void => {
    if (!opts.log) return;
    try {
      opts.log(event);
    } catch {
      // a failing logger must never take the relay down
    }
  };
  return {
    verifier,
    policy,
    expirySweepMs,
    shredder,
    retention,
    maxFrameBytes,
    authTimeoutMs,
    heartbeatMs,
    maxProtocolErrors,
    rateLimit,
    quota,
    byteRate,
    store,
    ownsStore,
    contacts,
    adminKeys,
    maxHistoryBytes: maxFrameBytes * 16,
    log,
    files,
    deleteFilesOnExpiry: retention !== KEEP_CIPHERTEXT,
  };
}
