/**
 * Incremental SHA-256 (FIPS 180-4) for data that streams past in pieces, such as a file read or
 * decrypted chunk by chunk: node:crypto under the `node` export condition, @noble/hashes
 * elsewhere (WebCrypto has no incremental digest). One hasher per input; `digest` ends it.
 */
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';
import { assertBytes } from './_assert.ts';
import { native } from './_native.ts';

export interface Sha256Stream {
  /** Adds the next piece. @throws {TypeError} if `data` is not a Uint8Array or after `digest`. */
  update(data: Uint8Array): void;
  /** The 32-byte digest of everything added; the hasher cannot be used after. */
  digest(): Uint8Array;
}

/** A new incremental SHA-256. */
export function createSha256(): Sha256Stream {
  const inner = native.sha256Stream?.() ?? nobleStream();
  let done = false;
  return {
    update(data) {
      assertBytes(data, 'data');
      if (done) throw new TypeError('hash already finished');
      inner.update(data);
    },
    digest() {
      if (done) throw new TypeError('hash already finished');
      done = true;
      return inner.digest();
    },
  };
}

function nobleStream(): { update(data: Uint8Array): void; digest(): Uint8Array } {
  const h = nobleSha256.create();
  return { update: (d) => void h.update(d), digest: () => h.digest() };
}
