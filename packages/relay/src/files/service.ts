/**
 * The relay's file service: routes `/v1/files...` (upload.ts, download.ts) with CORS (cors.ts),
 * rate limits and JSON errors; deletes a contact's blobs (shred, retention) and sweeps uploads
 * left unfinished; waits for uploads in progress when the relay closes, so their offsets are
 * recorded before the store closes.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ERROR_CODES, LatchkeyError, toLatchkeyError, type Principal } from '@latchkey/protocol';
import type { TokenVerifier } from '@latchkey/tokens';
import type { WebhookService } from '@latchkey/webhooks';
import { clientIp } from '../admission.ts';
import type { ContactPolicy, ContactStore } from '../contacts.ts';
import type { RelayConfig, RelayLogEvent, RelayOptions } from '../options.ts';
import { capabilityKey } from './capability.ts';
import type { BlobStore } from './blob-store.ts';
import {
  DEFAULT_FILE_IP_RATE,
  DEFAULT_FILE_PARTICIPANT_RATE,
  type FileLimits,
  type FileOptions,
  type FilesContext,
} from './config.ts';
import { Cors } from './cors.ts';
import { createLink, download } from './download.ts';
import { Buckets, bearer, sendError } from './http.ts';
import { contactBlobs, deleteRows, staleUploads, type FileMetaRunner } from './meta.ts';
import { createUpload, getUpload, patchUpload } from './upload.ts';

export const FILES_PREFIX = '/v1/files';

const ROUTE = /^\/v1\/files(?:\/([^/]{1,64})(?:\/(upload|link))?)?\/?$/;
const BLOB = /^[A-Za-z0-9_-]{22}$/;

export interface FileServiceOptions {
  meta: FileMetaRunner;
  blobs: BlobStore;
  /** True when the relay made `blobs` (and closes it). */
  ownsBlobs: boolean;
  limits: FileLimits;
  linkKey: Buffer;
  verifier: TokenVerifier;
  contacts: Pick<ContactStore, 'admit'>;
  policy: ContactPolicy;
  allowedOrigins: readonly string[] | undefined;
  webhooks: WebhookService | undefined;
  metrics: FilesContext['metrics'];
  log: (e: RelayLogEvent) => void;
  rates: Pick<FileOptions, 'participantRate' | 'ipRate'>;
  now?: () => number;
}

export class FileService {
  readonly #o: FileServiceOptions;
  readonly #ctx: FilesContext;
  readonly #inFlight = new Set<Promise<void>>();
  #closing = false;

  /** @throws RangeError on a bad rate. */
  constructor(o: FileServiceOptions) {
    this.#o = o;
    const now = o.now ?? Date.now;
    this.#ctx = {
      limits: o.limits,
      meta: o.meta,
      blobs: o.blobs,
      verifier: o.verifier,
      contacts: o.contacts,
      policy: o.policy,
      linkKey: o.linkKey,
      cors: new Cors(o.allowedOrigins),
      participants: new Buckets(o.rates.participantRate ?? DEFAULT_FILE_PARTICIPANT_RATE),
      ips: new Buckets(o.rates.ipRate ?? DEFAULT_FILE_IP_RATE),
      metrics: o.metrics,
      log: o.log,
      writing: new Set(),
      onStored: (p: Principal, blob: string, size: number) => {
        o.metrics.filesStored++;
        // The webhook event `file.stored` waits for its payload schema in @latchkey/webhooks.
        o.log({
          event: 'file-stored',
          contactId: p.contactId,
          participantId: p.participantId,
          blob,
          size,
        });
      },
      now,
    };
  }

  get blobs(): BlobStore {
    return this.#o.blobs;
  }

  /** Serves the request when its path is under /v1/files (returns true), else returns false. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const raw = req.url ?? '/';
    if (
      raw !== FILES_PREFIX &&
      !raw.startsWith(`${FILES_PREFIX}/`) &&
      !raw.startsWith(`${FILES_PREFIX}?`)
    )
      return false;
    const done = this.#route(req, res).catch((err: unknown) => {
      const e = toLatchkeyError(err);
      if (ERROR_CODES[e.code].http >= 500)
        this.#o.log({ event: 'file-request-failed', code: e.code, detail: e.detail });
      // A body left unread (refused before reading it) is not drained: the connection closes.
      if (!res.headersSent && !res.destroyed)
        sendError(res, e, req.complete ? {} : { connection: 'close' });
      else res.destroy();
      req.resume();
    });
    this.#inFlight.add(done);
    void done.finally(() => this.#inFlight.delete(done));
    return true;
  }

  async #route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const ctx = this.#ctx;
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://relay.invalid');
    } catch {
      throw new LatchkeyError('BAD_REQUEST', 'malformed URL');
    }
    ctx.cors.apply(req, res);
    const m = ROUTE.exec(url.pathname);
    if (!m) throw new LatchkeyError('NOT_FOUND', 'no such endpoint');
    const method = req.method ?? 'GET';
    if (method === 'OPTIONS') {
      ctx.cors.preflight(req, res);
      return;
    }
    if (this.#closing) throw new LatchkeyError('UNAVAILABLE', 'relay is shutting down');
    ctx.ips.take(clientIp(req));
    const [, blob, action] = m;
    if (blob !== undefined && !BLOB.test(blob))
      throw new LatchkeyError('NOT_FOUND', 'no such file');
    if (blob !== undefined && action === undefined && method === 'GET') {
      await download(ctx, blob, url, req, res);
      return;
    }
    const route =
      blob === undefined
        ? method === 'POST' && 'create'
        : action === undefined
          ? method === 'PATCH' && 'patch'
          : action === 'upload'
            ? method === 'GET' && 'state'
            : method === 'POST' && 'link';
    if (!route) throw new LatchkeyError('NOT_FOUND', 'no such endpoint');
    const p = await bearer(req, ctx.verifier);
    ctx.participants.take(`${p.contactId}\n${p.participantId}`);
    switch (route) {
      case 'create':
        return createUpload(ctx, p, req, res, this.#o.webhooks);
      case 'patch':
        return patchUpload(ctx, p, blob as string, req, res);
      case 'state':
        return getUpload(ctx, p, blob as string, res);
      case 'link':
        req.resume();
        return createLink(ctx, p, blob as string, res);
    }
  }

  /**
   * Deletes every blob of a contact: bytes first, then their rows (a failure between leaves
   * rows that a repeated delete completes). Returns how many.
   */
  async deleteContact(contactId: string): Promise<number> {
    const ids = await this.#o.meta.runFileFlow(
      'list',
      (sql) => contactBlobs(sql, contactId),
      false,
    );
    await this.#o.blobs.delete(ids);
    return this.#o.meta.runFileFlow('delete', (sql) => deleteRows(sql, ids), true);
  }

  /** Removes uploads left unfinished for longer than incompleteTtlSeconds. Returns how many. */
  async sweep(now = Date.now()): Promise<number> {
    const before = now - this.#o.limits.incompleteTtlSeconds * 1000;
    let n = 0;
    for (;;) {
      const ids = await this.#o.meta.runFileFlow(
        'stale',
        (sql) => staleUploads(sql, before, 100),
        false,
      );
      if (ids.length === 0) return n;
      await this.#o.blobs.delete(ids);
      n += await this.#o.meta.runFileFlow('delete', (sql) => deleteRows(sql, ids), true);
      if (ids.length < 100) return n;
    }
  }

  /** Refuses new requests and waits for those in progress. */
  async close(): Promise<void> {
    this.#closing = true;
    await Promise.allSettled([...this.#inFlight]);
    if (this.#o.ownsBlobs) await this.#o.blobs.close();
  }
}

/** The relay's file service, or undefined when the file API is off (RelayOptions `files`). */
export function createFileService(
  config: Pick<RelayConfig, 'files' | 'verifier' | 'contacts' | 'policy' | 'log'>,
  opts: Pick<RelayOptions, 'apiSecret' | 'admission' | 'webhooks'>,
  metrics: FilesContext['metrics'],
): FileService | undefined {
  if (!config.files) return undefined;
  return new FileService({
    ...config.files,
    linkKey: capabilityKey(opts.apiSecret),
    verifier: config.verifier,
    contacts: config.contacts,
    policy: config.policy,
    allowedOrigins: opts.admission?.allowedOrigins,
    webhooks: opts.webhooks,
    metrics,
    log: config.log,
  });
}
