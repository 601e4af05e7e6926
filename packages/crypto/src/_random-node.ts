/**
 * Random bytes from node:crypto's CSPRNG, for random.ts under the `node` export condition. Every
 * call into it pays a fixed cost of several microseconds (a crypto job), more than the AES-GCM of
 * a whole envelope; so, as node's own randomUUID and randomInt do, small requests are served from a
 * pool filled 4 KiB at a time. Bytes handed out are wiped from the pool at once: it holds only
 * bytes no caller has seen. No pooling while a startup snapshot is being built, since the snapshot
 * would copy the pool into every process started from it.
 */
import { randomFillSync } from 'node:crypto';
import { startupSnapshot } from 'node:v8';

const POOL_SIZE = 4096;
/** Requests up to this size (keys are 32 bytes, nonces 12) come from the pool; larger ones go
 * straight to the CSPRNG. */
const POOLED_MAX = 64;
const pool = new Uint8Array(POOL_SIZE);
let next = POOL_SIZE;

/** `n` fresh random bytes in their own array. */
export function nodeRandomBytes(n: number): Uint8Array {
  if (n > POOLED_MAX || startupSnapshot.isBuildingSnapshot()) {
    return randomFillSync(new Uint8Array(n));
  }
  if (next + n > POOL_SIZE) {
    randomFillSync(pool);
    next = 0;
  }
  const out = pool.slice(next, next + n);
  pool.fill(0, next, next + n);
  next += n;
  return out;
}
