/**
 * Content-key wrapping: a contact's 32-byte content key (CK) encrypted under a key-encryption key
 * (KEK) with AES-256-GCM, bound to the contact id and epoch through the additional data, so a
 * wrapped key moved to another contact or epoch fails to unwrap.
 *
 * Wrapped form: `nonce (12) || ciphertext (32) || tag (16)`, 60 bytes, with a random nonce.
 * AAD: `'latchkey.v1.wrap' || u32(len) || UTF-8(contactId) || u32(epoch)` (big-endian).
 * KEK derivation: HKDF-SHA256 (RFC 5869) of the master key, no salt, info `'latchkey.v1.kek'`
 * (or `'latchkey.v1.kek' || 0x00 || UTF-8(purpose)` when a purpose is given).
 */
import { assertBytes, assertBytesLength, assertString } from './_assert.ts';
import { lengthPrefixedString, u32 } from './_encoding.ts';
import { AuthenticationError } from './_errors.ts';
import { aesGcmDecrypt, aesGcmEncrypt } from './aead.ts';
import { concatBytes, utf8Encode } from './codec.ts';
import { hkdfSha256 } from './kdf.ts';
import { randomBytes } from './random.ts';

const KEY_LENGTH = 32;
const NONCE_LENGTH = 12;
const TAG_LENGTH = 16;
const WRAPPED_LENGTH = NONCE_LENGTH + KEY_LENGTH + TAG_LENGTH;
const KEK_INFO = 'latchkey.v1.kek';
const WRAP_DOMAIN = 'latchkey.v1.wrap';

/** What a wrapped content key is bound to. */
export interface WrapContext {
  /** The contact the content key belongs to. */
  contactId: string;
  /** The content key's epoch, an integer in `[0, 2^32 - 1]`. */
  epoch: number;
}

/**
 * Derives a 32-byte key-encryption key from a master key with HKDF-SHA256.
 *
 * @param masterKey - 32-byte master key (from the environment, a file, or the external KM).
 * @param purpose - Optional non-empty label to derive independent KEKs from one master key.
 * @returns The 32-byte KEK.
 * @throws {TypeError} if `masterKey` is not a Uint8Array or `purpose` is not a well-formed string.
 * @throws {RangeError} if `masterKey` is not 32 bytes or `purpose` is empty.
 */
export function deriveKek(masterKey: Uint8Array, purpose?: string): Uint8Array {
  assertBytesLength(masterKey, KEY_LENGTH, 'masterKey');
  let info = utf8Encode(KEK_INFO);
  if (purpose !== undefined) {
    assertString(purpose, 'purpose');
    if (purpose.length === 0) {
      throw new RangeError('purpose must not be empty');
    }
    info = concatBytes(info, new Uint8Array([0]), utf8Encode(purpose));
  }
  return hkdfSha256(masterKey, undefined, info, KEY_LENGTH);
}

function wrapAad(ctx: WrapContext): Uint8Array {
  if (typeof ctx !== 'object' || ctx === null) {
    throw new TypeError('ctx must be an object');
  }
  assertString(ctx.contactId, 'ctx.contactId');
  return concatBytes(
    utf8Encode(WRAP_DOMAIN),
    lengthPrefixedString(ctx.contactId),
    u32(ctx.epoch, 'ctx.epoch'),
  );
}

/**
 * Wraps (encrypts) a content key under a KEK, bound to a contact and epoch.
 *
 * @param kek - 32-byte key-encryption key.
 * @param contentKey - 32-byte content key.
 * @param ctx - The contact id and epoch the key belongs to.
 * @returns 60 bytes: `nonce || ciphertext || tag`.
 * @throws {TypeError} if a key is not a Uint8Array or `ctx` is malformed.
 * @throws {RangeError} if a key is not 32 bytes or `ctx.epoch` is not a u32.
 */
export async function wrapContentKey(
  kek: Uint8Array,
  contentKey: Uint8Array,
  ctx: WrapContext,
): Promise<Uint8Array> {
  assertBytesLength(kek, KEY_LENGTH, 'kek');
  assertBytesLength(contentKey, KEY_LENGTH, 'contentKey');
  const aad = wrapAad(ctx);
  const nonce = randomBytes(NONCE_LENGTH);
  return concatBytes(nonce, await aesGcmEncrypt(kek, nonce, contentKey, aad));
}

/**
 * Unwraps a content key wrapped by {@link wrapContentKey} for the same contact and epoch.
 *
 * @param kek - 32-byte key-encryption key.
 * @param wrapped - The 60-byte wrapped key.
 * @param ctx - The contact id and epoch it was wrapped for.
 * @returns The 32-byte content key.
 * @throws {TypeError} if `kek` or `wrapped` is not a Uint8Array or `ctx` is malformed.
 * @throws {RangeError} if `kek` is not 32 bytes or `ctx.epoch` is not a u32.
 * @throws {AuthenticationError} if `wrapped` is not 60 bytes, or the KEK, contact or epoch is
 *   wrong, or the data was altered.
 */
export async function unwrapContentKey(
  kek: Uint8Array,
  wrapped: Uint8Array,
  ctx: WrapContext,
): Promise<Uint8Array> {
  assertBytesLength(kek, KEY_LENGTH, 'kek');
  assertBytes(wrapped, 'wrapped');
  const aad = wrapAad(ctx);
  if (wrapped.length !== WRAPPED_LENGTH) {
    throw new AuthenticationError();
  }
  return aesGcmDecrypt(kek, wrapped.subarray(0, NONCE_LENGTH), wrapped.subarray(NONCE_LENGTH), aad);
}

/**
 * Generates a fresh random 256-bit content key.
 *
 * @returns 32 bytes from `crypto.getRandomValues`.
 */
export function generateContentKey(): Uint8Array {
  return randomBytes(KEY_LENGTH);
}
