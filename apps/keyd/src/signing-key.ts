/**
 * The key service's persistent Ed25519 signing key (it signs sender certificates, so clients
 * can pin its public key across restarts). Stored in `<dataDir>/keys/service-signing.key`,
 * mode 0600, and only wrapped: AES-256-GCM under a KEK derived from the master key for this
 * purpose alone (deriveKek(master, 'service-signing')), bound to a fixed label. A stolen file
 * alone is useless, and a wrong master key is caught at start.
 */
import { existsSync, renameSync, rmSync } from 'node:fs';
import { generateSigningKeyPair, signingPublicKey } from '@latchkey/crypto/sign';
import { deriveKek, unwrapContentKey, wrapContentKey } from '@latchkey/crypto/wrap';
import { createPrivateFile, readPrivateFile } from '@latchkey/keys';
import { LatchkeyError } from '@latchkey/protocol';

/** nonce (12) || wrapped seed (32) || tag (16), the form of @latchkey/crypto/wrap. */
const WRAPPED_BYTES = 60;
const KEK_PURPOSE = 'service-signing';
/** Not a valid contact id (it has dots), so it can never collide with a content key's context. */
const WRAP_CTX = { contactId: 'latchkey.service-signing', epoch: 0 } as const;

export interface ServiceSigningKey {
  secretKey: Uint8Array;
  publicKey: Uint8Array;
  created: boolean;
}

/**
 * Loads the service signing key from `path`, or creates it on first start.
 * @throws LatchkeyError KEY_UNAVAILABLE when the file does not unwrap under this master key, is
 *   readable by group or others, has the wrong size, or cannot be read or written.
 */
export async function loadOrCreateServiceSigningKey(
  path: string,
  masterKey: Uint8Array,
): Promise<ServiceSigningKey> {
  const kek = deriveKek(masterKey, KEK_PURPOSE);
  try {
    if (!existsSync(path)) {
      const pair = generateSigningKeyPair();
      const wrapped = await wrapContentKey(kek, pair.secretKey, WRAP_CTX);
      if (createPrivateFile(path, wrapped)) return { ...pair, created: true };
      pair.secretKey.fill(0); // another process created it first: use theirs
    }
    const wrapped = readPrivateFile(path, WRAPPED_BYTES);
    let secretKey: Uint8Array;
    try {
      secretKey = await unwrapContentKey(kek, wrapped, WRAP_CTX);
    } catch (err) {
      throw new LatchkeyError(
        'KEY_UNAVAILABLE',
        `service signing key ${path} does not match the master key`,
        { cause: err },
      );
    }
    return { secretKey, publicKey: signingPublicKey(secretKey), created: false };
  } finally {
    kek.fill(0);
  }
}

/**
 * Master-key rotation of the signing key file: unwraps it under `masterKey`, wraps it under
 * `newMasterKey` and replaces the file atomically (0600). A file that already unwraps under the
 * new key is left alone (a rotation finished earlier).
 * @throws LatchkeyError KEY_UNAVAILABLE when it unwraps under neither key or cannot be written.
 */
export async function rewrapServiceSigningKey(
  path: string,
  masterKey: Uint8Array,
  newMasterKey: Uint8Array,
): Promise<void> {
  if (!existsSync(path)) return;
  const wrapped = readPrivateFile(path, WRAPPED_BYTES);
  const oldKek = deriveKek(masterKey, KEK_PURPOSE);
  const newKek = deriveKek(newMasterKey, KEK_PURPOSE);
  try {
    try {
      (await unwrapContentKey(newKek, wrapped, WRAP_CTX)).fill(0);
      return;
    } catch {
      // not yet rotated
    }
    let seed: Uint8Array;
    try {
      seed = await unwrapContentKey(oldKek, wrapped, WRAP_CTX);
    } catch (err) {
      throw new LatchkeyError(
        'KEY_UNAVAILABLE',
        `service signing key ${path} does not match the master key`,
        { cause: err },
      );
    }
    const next = await wrapContentKey(newKek, seed, WRAP_CTX);
    seed.fill(0);
    const tmp = `${path}.new`;
    rmSync(tmp, { force: true });
    if (!createPrivateFile(tmp, next))
      throw new LatchkeyError('KEY_UNAVAILABLE', 'cannot write the signing key');
    renameSync(tmp, path);
  } finally {
    oldKek.fill(0);
    newKek.fill(0);
  }
}
