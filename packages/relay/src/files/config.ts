/**
 * The file API's options (RelayOptions `files`), their defaults (FILE_LIMITS and the per-
 * participant limits below) and checks, and the context the routes run in.
 */
import { FILE_LIMITS, type Principal } from '@latchkey/protocol';
import type { TokenVerifier } from '@latchkey/tokens';
import type { ContactPolicy, ContactStore } from '../contacts.ts';
import type { RateLimitOptions } from '../limiter.ts';
import type { BlobStore } from './blob-store.ts';
import type { Cors } from './cors.ts';
import type { Buckets } from './http.ts';
import type { FileMetaRunner } from './meta.ts';

export interface FileOptions {
  /**
   * Directory of the directory blob store (created 0700). Default: the SQLite store's path +
   * `.files`; a PostgreSQL store keeps blobs in its database instead unless this is given.
   */
  dir?: string;
  /** A blob store instance (the caller keeps ownership); wins over `dir`. */
  blobs?: BlobStore;
  /** Largest file ciphertext accepted (bytes, default FILE_LIMITS.maxFileBytes). */
  maxFileBytes?: number;
  /** File bytes one contact may hold, declared sizes counted at creation (default 1 GiB). */
  contactQuotaBytes?: number;
  /** Lifetime of a capability link (seconds, default FILE_LIMITS.linkTtlSeconds). */
  linkTtlSeconds?: number;
  /** Unfinished uploads one participant may have at once (default 8). */
  maxIncompletePerParticipant?: number;
  /** Unfinished uploads older than this are removed by the sweep (seconds, default 24 h). */
  incompleteTtlSeconds?: number;
  /** File API requests per participant (default 20/s, burst 100). */
  participantRate?: RateLimitOptions;
  /** File API requests per client IP, link downloads included (default 50/s, burst 200). */
  ipRate?: RateLimitOptions;
}

export interface FileLimits {
  maxFileBytes: number;
  contactQuotaBytes: number;
  linkTtlSeconds: number;
  maxIncompletePerParticipant: number;
  incompleteTtlSeconds: number;
  maxUploadRequestBytes: number;
}

export const DEFAULT_MAX_INCOMPLETE_PER_PARTICIPANT = 8;
export const DEFAULT_FILE_PARTICIPANT_RATE: RateLimitOptions = { perSecond: 20, burst: 100 };
export const DEFAULT_FILE_IP_RATE: RateLimitOptions = { perSecond: 50, burst: 200 };

/**
 * The limits with defaults filled in.
 * @throws RangeError when one is not a positive safe integer.
 */
export function resolveFileLimits(o: FileOptions): FileLimits {
  const limits: FileLimits = {
    maxFileBytes: o.maxFileBytes ?? FILE_LIMITS.maxFileBytes,
    contactQuotaBytes: o.contactQuotaBytes ?? FILE_LIMITS.contactQuotaBytes,
    linkTtlSeconds: o.linkTtlSeconds ?? FILE_LIMITS.linkTtlSeconds,
    maxIncompletePerParticipant:
      o.maxIncompletePerParticipant ?? DEFAULT_MAX_INCOMPLETE_PER_PARTICIPANT,
    incompleteTtlSeconds: o.incompleteTtlSeconds ?? FILE_LIMITS.incompleteTtlSeconds,
    maxUploadRequestBytes: FILE_LIMITS.maxUploadRequestBytes,
  };
  for (const [name, n] of Object.entries(limits)) {
    if (!Number.isSafeInteger(n) || n <= 0)
      throw new RangeError(`files.${name} must be a positive integer`);
  }
  return limits;
}

/** What the routes use. */
export interface FilesContext {
  limits: FileLimits;
  meta: FileMetaRunner;
  blobs: BlobStore;
  verifier: TokenVerifier;
  contacts: Pick<ContactStore, 'admit'>;
  policy: ContactPolicy;
  /** The link key (capability.ts). */
  linkKey: Buffer;
  cors: Cors;
  participants: Buckets;
  ips: Buckets;
  /** Bytes counters (metrics.ts). */
  metrics: { fileBytesUploaded: number; fileBytesDownloaded: number; filesStored: number };
  log: (e: { event: string; [field: string]: string | number | boolean | undefined }) => void;
  /** Blobs with a PATCH in progress on this relay: another one meanwhile is a 409. */
  writing: Set<string>;
  /** A completed upload (webhook, metrics). */
  onStored: (p: Principal, blob: string, size: number, at: number) => void;
  now: () => number;
}
