/**
 * Imported keys (WebCrypto CryptoKeys, node:crypto KeyObjects), cached for every backend alike.
 *
 * Secret keys (`KeyCache`) are cached per raw key array. An entry is reused only while the array
 * still holds the bytes it was imported from (compared in constant time), so a caller that
 * overwrites a key array in place never gets the old key back; the entry dies with the array.
 *
 * Public keys (`PublicKeyCache`) are cached by their bytes, a bounded number, oldest dropped
 * first: receivers decode the same sender key from base64 into a fresh array for every message,
 * and importing it again each time would cost more than the verification.
 */
import { constantTimeEqual } from './compare.ts';

/** Runs `drop` if `key` is a Promise that rejects (an import the platform refused). */
function onRejection(key: unknown, drop: () => void): void {
  if (key instanceof Promise) key.catch(drop);
}

interface Entry<K> {
  /** Copy of the raw key the entry was imported from, to notice a mutated array. */
  readonly raw: Uint8Array;
  readonly key: K;
}

/** A cache of keys imported from raw byte arrays. */
export class KeyCache<K> {
  readonly #entries = new WeakMap<Uint8Array, Entry<K>>();

  /**
   * The key imported from `bytes`, importing it with `load` (given a private copy of the bytes)
   * unless a live entry exists. A rejected Promise is dropped from the cache; a `load` that throws
   * caches nothing.
   */
  get(bytes: Uint8Array, load: (raw: Uint8Array<ArrayBuffer>) => K): K {
    const hit = this.#entries.get(bytes);
    if (hit !== undefined && constantTimeEqual(hit.raw, bytes)) {
      return hit.key;
    }
    const raw = new Uint8Array(bytes);
    const key = load(raw);
    this.#entries.set(bytes, { raw, key });
    onRejection(key, () => {
      if (this.#entries.get(bytes)?.key === key) this.#entries.delete(bytes);
    });
    return key;
  }
}

/**
 * The bytes of a public value (a key, never a secret) as a string, one character per byte: a Map
 * key made in one step, without the intermediate strings of a per-byte concatenation.
 */
export function publicBytesId(bytes: Uint8Array): string {
  if (bytes.length <= 256) return String.fromCharCode.apply(null, bytes as unknown as number[]);
  let id = '';
  for (let i = 0; i < bytes.length; i += 256) id += publicBytesId(bytes.subarray(i, i + 256));
  return id;
}

/** Values keyed by the bytes of a public key; never for secrets, which it keeps as strings. */
export class PublicKeyCache<K> {
  readonly #entries = new Map<string, K>();
  readonly #max: number;

  constructor(max: number) {
    this.#max = max;
  }

  /**
   * The value for `publicKey`, made by `load` unless cached. A rejected Promise is dropped from
   * the cache; a `load` that throws caches nothing.
   */
  get(publicKey: Uint8Array, load: (raw: Uint8Array<ArrayBuffer>) => K): K {
    const id = publicBytesId(publicKey);
    const hit = this.#entries.get(id);
    if (hit !== undefined) return hit;
    const key = load(new Uint8Array(publicKey));
    if (this.#entries.size >= this.#max) this.#entries.delete(this.#entries.keys().next().value!);
    this.#entries.set(id, key);
    onRejection(key, () => {
      if (this.#entries.get(id) === key) this.#entries.delete(id);
    });
    return key;
  }
}
