/**
 * The external key manager over HTTPS (docs/key-manager-api.yaml), in its two models:
 *
 * - wrap model (`openHttpKeyManager`, `createHttpWrapper`): Latchkey keeps the wrapped key store
 *   (stores/key-store.ts) and asks the enterprise's service to wrap and unwrap each content key under its
 *   KEK, bound to contact id and epoch. Every unwrap is a request the enterprise can log,
 *   rate-limit or refuse; refusing is how it revokes or shreds.
 * - key-store model (`openHttpKeyStoreManager`): the enterprise generates and keeps the content
 *   keys itself; Latchkey stores nothing.
 *
 * Both optionally keep unwrapped keys in memory for `cacheTtlMs` (0: never), which bounds how
 * long a refusal at the enterprise takes to bite. Resilience (timeouts, retries, breaker) in
 * _km-client.ts.
 */
import { fromBase64Url, toBase64Url } from '@latchkey/crypto/codec';
import { constantTimeEqual } from '@latchkey/crypto/compare';
import { LatchkeyError } from '@latchkey/protocol';
import {
  KM_PATHS,
  KmGenerateResponse,
  KmHealthResponse,
  KmKeyMetadata,
  KmStoreContact,
  KmStoreKey,
  KmUnwrapResponse,
  KmWrapResponse,
} from '@latchkey/protocol';
import type { ContentKey, KeyManager, KeyManagerHealth } from '../key-manager.ts';
import type { KeyWrapper, WrapRequest } from '../key-wrapper.ts';
import { KmClient, type BreakerState, type KmClientOptions } from './_km-client.ts';
import { openKeyManager } from '../open-key-manager.ts';
import type { WrappedKeyManager } from '../stores/key-store.ts';
import { checkContactId, checkEpoch } from '../stores/key-table.ts';

export type {
  KmAuth,
  KmClientOptions,
  BreakerState,
  KmFailure,
  KmFailureKind,
} from './_km-client.ts';

/** The client's last failure in the shape of KeyManagerHealth (no operation name, no flags). */
function lastErrorOf(client: KmClient): KeyManagerHealth['lastError'] | undefined {
  const f = client.lastError;
  if (f === undefined) return undefined;
  return {
    at: f.at,
    ...(f.status === undefined ? {} : { status: f.status }),
    ...(f.code === undefined ? {} : { code: f.code }),
    reason: `${f.op}: ${f.reason}`,
  };
}

/** GET /v1/health through `client`, as KeyManagerHealth with the last error. */
async function healthOf(client: KmClient, backend: string): Promise<KeyManagerHealth> {
  let out: KeyManagerHealth;
  try {
    const h = await client.call('GET', KM_PATHS.health, undefined, KmHealthResponse);
    out = { status: h.status, backend, ...(h.detail === undefined ? {} : { detail: h.detail }) };
  } catch (err) {
    out = {
      status: 'degraded',
      backend,
      detail: LatchkeyError.is(err) ? (err.detail ?? err.message) : String(err),
    };
  }
  const lastError = lastErrorOf(client);
  return lastError === undefined ? out : { ...out, lastError };
}

/** Most unwrapped keys held in the cache at once (oldest evicted first). */
const CACHE_MAX = 10_000;

/** In-memory cache of unwrapped keys with a TTL; zeroes what it drops. */
class KeyCache {
  readonly #ttl: number;
  readonly #now: () => number;
  readonly #map = new Map<
    string,
    { key: Uint8Array; tag: Uint8Array | undefined; until: number }
  >();

  constructor(ttlMs: number, now: () => number) {
    if (!Number.isFinite(ttlMs) || ttlMs < 0) throw new RangeError('cacheTtlMs must be >= 0');
    this.#ttl = ttlMs;
    this.#now = now;
  }

  get(id: string, tag?: Uint8Array): Uint8Array | undefined {
    const hit = this.#map.get(id);
    if (hit === undefined) return undefined;
    if (
      hit.until <= this.#now() ||
      (tag !== undefined && (hit.tag === undefined || !constantTimeEqual(tag, hit.tag)))
    ) {
      this.#drop(id);
      return undefined;
    }
    return Uint8Array.from(hit.key);
  }

  set(id: string, key: Uint8Array, tag?: Uint8Array): void {
    if (this.#ttl === 0) return;
    this.#drop(id);
    if (this.#map.size >= CACHE_MAX) {
      const oldest = this.#map.keys().next();
      if (oldest.done !== true) this.#drop(oldest.value);
    }
    this.#map.set(id, {
      key: Uint8Array.from(key),
      tag: tag === undefined ? undefined : Uint8Array.from(tag),
      until: this.#now() + this.#ttl,
    });
  }

  dropContact(contactId: string): void {
    for (const id of [...this.#map.keys()]) if (id.startsWith(`${contactId}/`)) this.#drop(id);
  }

  #drop(id: string): void {
    this.#map.get(id)?.key.fill(0);
    this.#map.delete(id);
  }

  clear(): void {
    for (const id of [...this.#map.keys()]) this.#drop(id);
  }
}

export interface HttpWrapperOptions extends KmClientOptions {
  /** The enterprise's name of the KEK (`{keyId}` in the paths). */
  keyId: string;
  /** Create content keys with `generate` (data-key style) instead of generating them here. */
  useGenerate?: boolean;
  /** Keep unwrapped keys in memory this long (ms); 0 (default) keeps none. */
  cacheTtlMs?: number;
}

/** The wrap-model KeyWrapper, with its client's circuit state for monitoring. */
export interface HttpKeyWrapper extends KeyWrapper {
  readonly breaker: BreakerState;
  /** GET /v1/keys/{keyId}. @throws LatchkeyError KEY_UNAVAILABLE. */
  metadata(): Promise<KmKeyMetadata>;
}

/**
 * A KeyWrapper backed by the enterprise's key manager (wrap model).
 * @throws TypeError / RangeError for bad options.
 */
export function createHttpWrapper(opts: HttpWrapperOptions): HttpKeyWrapper {
  const client = new KmClient(opts);
  const cache = new KeyCache(opts.cacheTtlMs ?? 0, opts.now ?? Date.now);
  const { keyId } = opts;
  const ctx = (req: WrapRequest) => ({
    contactId: req.contactId,
    epoch: req.epoch,
    reason: req.reason,
  });
  const cacheId = (req: WrapRequest): string => `${req.contactId}/${req.epoch}`;
  const keyOf = (b64: string): Uint8Array => fromBase64Url(b64);
  const wrapper: HttpKeyWrapper = {
    backend: 'http',
    checkAtOpen: false,
    get breaker() {
      return client.breaker;
    },
    async wrap(key, req) {
      const res = await client.call(
        'POST',
        KM_PATHS.wrap(keyId),
        { ...ctx(req), key: toBase64Url(key) },
        KmWrapResponse,
      );
      return fromBase64Url(res.wrapped);
    },
    async unwrap(wrapped, req) {
      const hit = cache.get(cacheId(req), wrapped);
      if (hit !== undefined) return hit;
      const res = await client.call(
        'POST',
        KM_PATHS.unwrap(keyId),
        { ...ctx(req), wrapped: toBase64Url(wrapped) },
        KmUnwrapResponse,
      );
      const key = keyOf(res.key);
      cache.set(cacheId(req), key, wrapped);
      return key;
    },
    async rewrap(wrapped, req) {
      const res = await client.call(
        'POST',
        KM_PATHS.rewrap(keyId),
        { ...ctx(req), wrapped: toBase64Url(wrapped) },
        KmWrapResponse,
      );
      return fromBase64Url(res.wrapped);
    },
    async destroyContact(contactId) {
      cache.dropContact(contactId);
      try {
        await client.call('POST', KM_PATHS.destroy(keyId), { contactId, reason: 'destroy' }, null);
      } catch (err) {
        // 404 NOT_FOUND: a key manager without destroy (docs: "may omit"); nothing to tell.
        if (!LatchkeyError.is(err, 'NOT_FOUND')) throw err;
      }
    },
    health: () => healthOf(client, 'http'),
    metadata: () => client.call('GET', KM_PATHS.key(keyId), undefined, KmKeyMetadata),
    async close() {
      cache.clear();
      client.close();
    },
  };
  if (opts.useGenerate === true) {
    wrapper.generate = async (req) => {
      const res = await client.call('POST', KM_PATHS.generate(keyId), ctx(req), KmGenerateResponse);
      return { key: keyOf(res.key), wrapped: fromBase64Url(res.wrapped) };
    };
  }
  return wrapper;
}

/**
 * The wrap model as a KeyManager: a local wrapped key store at `path` whose keys the
 * enterprise's service wraps. Opens even while the service is down (calls then fail with
 * KEY_UNAVAILABLE until it is back).
 * @throws LatchkeyError KEY_UNAVAILABLE when the store cannot be opened.
 */
export function openHttpKeyManager(
  opts: HttpWrapperOptions & { path: string; now?: () => number },
): Promise<WrappedKeyManager> {
  const { path, ...rest } = opts;
  return openKeyManager({
    store: { path },
    wrapper: createHttpWrapper(rest),
    ...(opts.now === undefined ? {} : { now: opts.now }),
  });
}

export interface HttpKeyStoreOptions extends KmClientOptions {
  /** Keep fetched keys in memory this long (ms); 0 (default) keeps none. */
  cacheTtlMs?: number;
}

/** The key-store model: the KeyManager with its client's circuit state for monitoring. */
export interface HttpKeyStoreManager extends KeyManager {
  readonly breaker: BreakerState;
}

/** The key-store model: the enterprise generates and keeps the content keys. */
export function openHttpKeyStoreManager(opts: HttpKeyStoreOptions): HttpKeyStoreManager {
  const client = new KmClient(opts);
  const cache = new KeyCache(opts.cacheTtlMs ?? 0, opts.now ?? Date.now);
  let closed = false;
  /** Newest epoch seen per contact, reported with cached keys. */
  const currents = new Map<string, number>();
  /** In-process single flight of first creations (the service makes creation idempotent). */
  const creating = new Map<string, Promise<unknown>>();
  const live = (): void => {
    if (closed) throw new LatchkeyError('KEY_UNAVAILABLE', 'key manager is closed');
  };
  const fetchKey = async (contactId: string, epoch: number | 'current'): Promise<ContentKey> => {
    const res = await client.call(
      'GET',
      `${KM_PATHS.storeKey(contactId, epoch)}?reason=fetch`,
      undefined,
      KmStoreKey,
    );
    if (
      res.contactId !== contactId ||
      (epoch !== 'current' && res.epoch !== epoch) ||
      res.epoch > res.currentEpoch
    ) {
      throw new LatchkeyError('KEY_UNAVAILABLE', 'malformed answer from the external key manager', {
        detail: 'answer for another contact or epoch',
      });
    }
    const key = fromBase64Url(res.key);
    cache.set(`${contactId}/${res.epoch}`, key);
    currents.set(contactId, res.currentEpoch);
    return { contactId, epoch: res.epoch, currentEpoch: res.currentEpoch, key };
  };
  return {
    get breaker() {
      return client.breaker;
    },
    async getContentKey(contactId, epoch) {
      live();
      checkContactId(contactId);
      checkEpoch(epoch);
      if (epoch !== undefined) {
        const hit = cache.get(`${contactId}/${epoch}`);
        // Within the TTL the reported current epoch may lag a rotation made elsewhere.
        if (hit !== undefined)
          return {
            contactId,
            epoch,
            currentEpoch: Math.max(epoch, currents.get(contactId) ?? epoch),
            key: hit,
          };
      }
      try {
        return await fetchKey(contactId, epoch ?? 'current');
      } catch (err) {
        if (!LatchkeyError.is(err, 'NOT_FOUND') || (epoch !== undefined && epoch !== 0)) throw err;
      }
      // Unknown contact: create it (idempotent at the service), then read epoch 0 or current.
      let job = creating.get(contactId);
      if (job === undefined) {
        job = client.call(
          'POST',
          KM_PATHS.storeContact(contactId),
          { reason: 'create' },
          KmStoreContact,
        );
        creating.set(contactId, job);
        void job.finally(() => creating.delete(contactId)).catch(() => undefined);
      }
      await job;
      return fetchKey(contactId, epoch ?? 'current');
    },
    async currentEpoch(contactId) {
      live();
      checkContactId(contactId);
      const res = await client.call(
        'GET',
        KM_PATHS.storeContact(contactId),
        undefined,
        KmStoreContact,
      );
      currents.set(contactId, res.currentEpoch);
      return res.currentEpoch;
    },
    async rotate(contactId) {
      live();
      checkContactId(contactId);
      const res = await client.call(
        'POST',
        KM_PATHS.storeRotate(contactId),
        { reason: 'rotate' },
        KmStoreContact,
      );
      currents.set(contactId, res.currentEpoch);
      return res.currentEpoch;
    },
    async destroy(contactId) {
      live();
      checkContactId(contactId);
      cache.dropContact(contactId);
      currents.delete(contactId);
      await client.call(
        'DELETE',
        `${KM_PATHS.storeContact(contactId)}?reason=destroy`,
        undefined,
        null,
      );
    },
    async health() {
      if (closed) return { status: 'degraded', backend: 'http-store', detail: 'closed' };
      return healthOf(client, 'http-store');
    },
    async close() {
      if (closed) return;
      closed = true;
      await Promise.allSettled([...creating.values()]);
      cache.clear();
      client.close();
    },
  };
}
