/**
 * AES-256-GCM (NIST SP 800-38D, RFC 5116 §5.2) on node:crypto, for aead.ts under the `node`
 * export condition: synchronous, OpenSSL's AES-NI code without WebCrypto's thread-pool round trip.
 * Same contract as the other backends: `ciphertext || tag(16)` out, `AuthenticationError` for a
 * tag that does not verify. Arguments are checked by aead.ts before they get here.
 */
import { createCipheriv, createDecipheriv, createSecretKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { ownBytes } from './_buffer-node.ts';
import { AuthenticationError } from './_errors.ts';
import { KeyCache } from './_key-cache.ts';

const TAG_LENGTH = 16;
const keys = new KeyCache<KeyObject>();

const secretKey = (key: Uint8Array): KeyObject => keys.get(key, (raw) => createSecretKey(raw));

/** `ciphertext || tag` of `plaintext`; copied out of node's pooled Buffers into its own array. */
export function nodeAesGcmEncrypt(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array | undefined,
): Uint8Array {
  const cipher = createCipheriv('aes-256-gcm', secretKey(key), nonce, {
    authTagLength: TAG_LENGTH,
  });
  if (aad !== undefined) cipher.setAAD(aad);
  const out = new Uint8Array(plaintext.length + TAG_LENGTH);
  out.set(cipher.update(plaintext));
  cipher.final();
  out.set(cipher.getAuthTag(), plaintext.length);
  return out;
}

/** The plaintext of `ciphertext || tag`. @throws {AuthenticationError} if the tag is wrong. */
export function nodeAesGcmDecrypt(
  key: Uint8Array,
  nonce: Uint8Array,
  sealed: Uint8Array,
  aad: Uint8Array | undefined,
): Uint8Array {
  const length = sealed.length - TAG_LENGTH;
  if (length < 0) throw new AuthenticationError();
  const decipher = createDecipheriv('aes-256-gcm', secretKey(key), nonce, {
    authTagLength: TAG_LENGTH,
  });
  if (aad !== undefined) decipher.setAAD(aad);
  decipher.setAuthTag(sealed.subarray(length));
  const plaintext = decipher.update(sealed.subarray(0, length));
  try {
    decipher.final();
  } catch {
    plaintext.fill(0); // released before the tag was checked: never let it out
    throw new AuthenticationError();
  }
  return ownBytes(plaintext);
}
