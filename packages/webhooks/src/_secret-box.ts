/**
 * Endpoint secrets at rest: each secret is sealed with AES-256-GCM (@latchkey/crypto `aead`,
 * NIST SP 800-38D) under the outbox key, with a fresh random 96-bit nonce, bound to its endpoint
 * through the additional data, so a sealed secret copied into another endpoint's row fails to
 * open.
 *
 * Sealed form: `v1.` + base64url(`nonce (12) || ciphertext || tag (16)`).
 * AAD: `'latchkey.v1.webhook-secret' || 0x00 || UTF-8(endpointId)`.
 *
 * The outbox key is 32 raw bytes: one the owner passes, or a key file beside the database
 * (created 0600 with fresh random bytes; an existing one readable by group or others, or of the
 * wrong size, is refused). The relay keeps its own file and so does not depend on the key
 * service or its master key.
 */
import {
  closeSync,
  constants,
  existsSync,
  fchmodSync,
  fstatSync,
  fsyncSync,
  linkSync,
  openSync,
  readSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { aesGcmDecrypt, aesGcmEncrypt } from '@latchkey/crypto/aead';
import {
  concatBytes,
  fromBase64Url,
  toBase64Url,
  utf8Decode,
  utf8Encode,
} from '@latchkey/crypto/codec';
import { randomBytes } from '@latchkey/crypto/random';
import { LatchkeyError } from '@latchkey/protocol';

export const OUTBOX_KEY_BYTES = 32;
const NONCE_BYTES = 12;
const PREFIX = 'v1.';
const DOMAIN = 'latchkey.v1.webhook-secret';
const POSIX = process.platform !== 'win32';

function aad(endpointId: string): Uint8Array {
  return concatBytes(utf8Encode(DOMAIN), new Uint8Array([0]), utf8Encode(endpointId));
}

/** Is this a sealed secret (as opposed to a plaintext one written before sealing)? */
export function isSealed(value: string): boolean {
  return value.startsWith(PREFIX);
}

/** Seals one endpoint secret under the outbox key. */
export async function sealSecret(
  key: Uint8Array,
  endpointId: string,
  secret: string,
): Promise<string> {
  const nonce = randomBytes(NONCE_BYTES);
  const ct = await aesGcmEncrypt(key, nonce, utf8Encode(secret), aad(endpointId));
  return PREFIX + toBase64Url(concatBytes(nonce, ct));
}

/**
 * Opens a sealed endpoint secret.
 * @throws LatchkeyError UNAVAILABLE when it does not open (another key, another endpoint, edited).
 */
export async function openSecret(
  key: Uint8Array,
  endpointId: string,
  sealed: string,
): Promise<string> {
  try {
    if (!isSealed(sealed)) throw new TypeError('not sealed');
    const raw = fromBase64Url(sealed.slice(PREFIX.length));
    const plain = await aesGcmDecrypt(
      key,
      raw.subarray(0, NONCE_BYTES),
      raw.subarray(NONCE_BYTES),
      aad(endpointId),
    );
    return utf8Decode(plain);
  } catch (err) {
    throw new LatchkeyError(
      'UNAVAILABLE',
      'webhook secret cannot be opened (is this the outbox key it was sealed with?)',
      { cause: err },
    );
  }
}

/** Checks an owner-given outbox key. @throws RangeError when it is not 32 bytes. */
export function checkOutboxKey(key: Uint8Array): Uint8Array {
  if (!(key instanceof Uint8Array) || key.length !== OUTBOX_KEY_BYTES)
    throw new RangeError(`the outbox key must be ${OUTBOX_KEY_BYTES} bytes`);
  return key;
}

function readKeyFile(path: string): Uint8Array {
  const fd = openSync(path, constants.O_RDONLY | (POSIX ? constants.O_NOFOLLOW : 0));
  try {
    const st = fstatSync(fd);
    if (!st.isFile())
      throw new LatchkeyError('UNAVAILABLE', `outbox key file ${path} is not a regular file`);
    if (POSIX && (st.mode & 0o077) !== 0) {
      throw new LatchkeyError(
        'UNAVAILABLE',
        `outbox key file ${path} has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}: group or others may read it; run chmod 600 on it`,
      );
    }
    if (st.size !== OUTBOX_KEY_BYTES)
      throw new LatchkeyError(
        'UNAVAILABLE',
        `outbox key file ${path} holds ${st.size} bytes, expected ${OUTBOX_KEY_BYTES}`,
      );
    const out = new Uint8Array(OUTBOX_KEY_BYTES);
    let off = 0;
    while (off < out.length) {
      const n = readSync(fd, out, off, out.length - off, off);
      if (n === 0) throw new LatchkeyError('UNAVAILABLE', `outbox key file ${path} is short`);
      off += n;
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

/** Writes the key to a temporary 0600 file and links it into place; false when another won. */
function createKeyFile(path: string, key: Uint8Array): boolean {
  const tmp = `${path}.${process.pid}.${toBase64Url(randomBytes(6))}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    if (POSIX) fchmodSync(fd, 0o600);
    let off = 0;
    while (off < key.length) off += writeSync(fd, key, off, key.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    unlinkSync(tmp);
  }
}

/**
 * Reads the outbox key file, or creates it (0600, fresh random bytes) when missing. Safe when
 * several processes start at once: one creates it, all read the same bytes.
 * @throws LatchkeyError UNAVAILABLE when an existing file is readable by group or others, has the
 *   wrong size, or is not a regular file; the file system's error when it
 *   cannot be read or created.
 */
export function loadOrCreateOutboxKey(path: string): Uint8Array {
  if (!existsSync(path)) {
    const key = randomBytes(OUTBOX_KEY_BYTES);
    if (createKeyFile(path, key)) return key;
  }
  return readKeyFile(path);
}
