/**
 * SHA-256 (FIPS 180-4) on node:crypto (OpenSSL, SHA extensions where the CPU has them), for mac.ts
 * under the `node` export condition: the transcript hashes every message body, and the portable
 * @noble/hashes code is tens of times slower on message-sized input. The one-shot `crypto.hash`
 * (Node 20.12+; the workspace needs 20.19) spares the Hash object `createHash` builds per call.
 */
import { createHash, hash } from 'node:crypto';
import { ownBytes } from './_buffer-node.ts';

/** The 32-byte digest of `data`, in its own array. */
export function nodeSha256(data: Uint8Array): Uint8Array {
  return ownBytes(hash('sha256', data, 'buffer'));
}

/** An incremental SHA-256 over node:crypto, for files hashed as they stream (hash.ts). */
export function nodeSha256Stream(): { update(data: Uint8Array): void; digest(): Uint8Array } {
  const h = createHash('sha256');
  return {
    update: (data) => void h.update(data),
    digest: () => ownBytes(h.digest()),
  };
}
