/**
 * Sealing and opening Latchkey envelopes: AES-256-GCM (aead.ts) over the message, with every
 * header field bound as additional data, and an Ed25519 signature (sign.ts, RFC 8032) by the
 * sender's session key so that one member of a contact cannot forge another.
 *
 * Additional data (`envelopeAad`), all integers big-endian (envelope version 2):
 *   'latchkey.v2.envelope' || u32(v) || u32(len) alg || u32(len) contactId || u32(epoch)
 *   || u32(len) senderId || u32(len) msgId || u64(sentAt) || u32(ctr) || prev[32]
 *   || u64(seenSeq) || seenHash[32]
 * The last four are the transcript fields (transcript.ts): the sender session's counter and
 * chain value, and the transcript hash of what the sender had seen.
 * Strings are UTF-8 and length-prefixed, so the encoding is injective.
 *
 * Signature: `signWithContext(signingKey, 'latchkey.v1.msgsig', aad || nonce || ciphertext)`;
 * the nonce is fixed-size, so this too is unambiguous. `openEnvelope` checks the signature
 * before it decrypts, and reports every failure as the same `AuthenticationError`.
 */
import { assertBytes, assertBytesLength, assertInteger, assertString } from './_assert.ts';
import { lengthPrefixedString, u32 } from './_encoding.ts';
import { AuthenticationError } from './_errors.ts';
import { aesGcmDecrypt, aesGcmEncrypt } from './aead.ts';
import { concatBytes, utf8Encode } from './codec.ts';
import { sha256 } from './mac.ts';
import { randomBytes } from './random.ts';
import { signAsync, verifyAsync } from './sign.ts';

const ENVELOPE_VERSION = 2;
const ENVELOPE_ALG = 'latchkey.v1.aes256gcm';
const AAD_DOMAIN = 'latchkey.v2.envelope';
const HASH_LENGTH = 32;
const SIG_CONTEXT = 'latchkey.v1.msgsig';
const FINGERPRINT_DOMAIN = 'latchkey.v1.fingerprint';
const KEY_LENGTH = 32;
const NONCE_LENGTH = 12;
const ED25519_KEY_LENGTH = 32;
const TAG_LENGTH = 16;
const U32_MAX = 0xffff_ffff;
/** `u32(len) || 'latchkey.v1.msgsig'`: signWithContext's framing of the envelope signature. */
const SIG_PREFIX = lengthPrefixedString(SIG_CONTEXT);
/** The fields every v2 envelope's additional data starts with: domain, `v`, `alg`. */
const AAD_PREFIX = concatBytes(
  utf8Encode(AAD_DOMAIN),
  u32(ENVELOPE_VERSION),
  lengthPrefixedString(ENVELOPE_ALG),
);
/** The additional data's fixed-size part: prefix, three string lengths, integers, two hashes. */
const AAD_FIXED = AAD_PREFIX.length + 3 * 4 + 4 + 8 + 4 + HASH_LENGTH + 8 + HASH_LENGTH;
/**
 * Where the additional data is built before it is copied out (synchronously: never shared between
 * messages): one array written in place instead of a small array per field and their
 * concatenation, for the two times per message it is built (seal, open).
 */
const scratch = new Uint8Array(1024);

/** The authenticated header of an envelope: everything the relay stores except `seq`. */
export interface EnvelopeHeader {
  /** Envelope format version. */
  v: 2;
  /** Algorithm identifier: AES-256-GCM content encryption, Ed25519 sender signature. */
  alg: 'latchkey.v1.aes256gcm';
  /** The contact (chat session) the message belongs to. */
  contactId: string;
  /** Epoch of the content key that sealed it, an integer in `[0, 2^32 - 1]`. */
  epoch: number;
  /** Participant id of the sender. */
  senderId: string;
  /** Client-generated unique message id (idempotent retries). */
  msgId: string;
  /** Send time in milliseconds since the Unix epoch, a non-negative safe integer. */
  sentAt: number;
  /** The sender session's message counter, from 1, an integer in `[1, 2^32 - 1]`. */
  ctr: number;
  /** The session's chain value before this message (32 bytes; zeros for ctr 1). */
  prev: Uint8Array;
  /** The last seq the sender had verified when it sealed (0: none). */
  seenSeq: number;
  /** The sender's transcript hash at `seenSeq` (32 bytes; zeros for 0). */
  seenHash: Uint8Array;
}

/**
 * Encodes an envelope header as AES-GCM additional data: the domain string
 * `'latchkey.v2.envelope'` followed by each field in a fixed order, strings as
 * `u32 length || UTF-8`, `v`, `epoch` and `ctr` as u32, `sentAt` and `seenSeq` as u64, all
 * big-endian, and the two 32-byte hashes as they are. Two different headers never give the
 * same bytes.
 *
 * @param h - The header.
 * @returns The additional data.
 * @throws {TypeError} if `h` is not an object, a string field is not a well-formed string, a
 *   hash is not a Uint8Array, or `v`/`alg` are not the supported `2`/`'latchkey.v1.aes256gcm'`.
 * @throws {RangeError} if `epoch` is not a u32, `ctr` not in `[1, 2^32 - 1]`, `sentAt` or
 *   `seenSeq` not a non-negative safe integer, or a hash is not 32 bytes.
 */
export function envelopeAad(h: EnvelopeHeader): Uint8Array {
  const { bytes, length } = writeAad(h);
  return bytes.slice(0, length);
}

/** Writes `value` (a u32) big-endian at `out[at..at+4]`. */
function writeU32(out: Uint8Array, at: number, value: number): void {
  out[at] = value >>> 24;
  out[at + 1] = value >>> 16;
  out[at + 2] = value >>> 8;
  out[at + 3] = value;
}

/** Writes `value` (a non-negative safe integer) as a u64 big-endian at `out[at..at+8]`. */
function writeU64(out: Uint8Array, at: number, value: number): void {
  writeU32(out, at, Math.floor(value / 2 ** 32));
  writeU32(out, at + 4, value >>> 0);
}

/**
 * Writes `u32(len) || UTF-8(text)` at `out[at..]` (which has room for 3 bytes per UTF-16 unit) and
 * returns the offset after it. ASCII, which ids are, is copied as it is; other text goes through
 * `utf8Encode`, which refuses a lone surrogate.
 */
function writeString(out: Uint8Array, at: number, text: string): number {
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x80) {
      const bytes = utf8Encode(text);
      writeU32(out, at, bytes.length);
      out.set(bytes, at + 4);
      return at + 4 + bytes.length;
    }
    out[at + 4 + i] = c;
  }
  writeU32(out, at, n);
  return at + 4 + n;
}

/**
 * Checks `h` and writes its additional data (the encoding {@link envelopeAad} describes, with the
 * same checks and errors in the same order) at the start of `bytes`: `scratch`, or a new array
 * for a header too long for it.
 */
function writeAad(h: EnvelopeHeader): { bytes: Uint8Array; length: number } {
  if (typeof h !== 'object' || h === null) {
    throw new TypeError('header must be an object');
  }
  if (h.v !== ENVELOPE_VERSION) {
    throw new TypeError(`unsupported envelope version`);
  }
  if (h.alg !== ENVELOPE_ALG) {
    throw new TypeError(`unsupported envelope algorithm`);
  }
  assertString(h.contactId, 'header.contactId');
  assertString(h.senderId, 'header.senderId');
  assertString(h.msgId, 'header.msgId');
  assertBytesLength(h.prev, HASH_LENGTH, 'header.prev');
  assertBytesLength(h.seenHash, HASH_LENGTH, 'header.seenHash');
  if (h.ctr === 0) throw new RangeError('header.ctr must be at least 1');
  // At most 3 UTF-8 bytes per UTF-16 unit (a surrogate pair: 4 bytes for 2 units).
  const room = AAD_FIXED + 3 * (h.contactId.length + h.senderId.length + h.msgId.length);
  const out = room <= scratch.length ? scratch : new Uint8Array(room);
  out.set(AAD_PREFIX);
  let at = writeString(out, AAD_PREFIX.length, h.contactId);
  assertInteger(h.epoch, 0, U32_MAX, 'header.epoch');
  writeU32(out, at, h.epoch);
  at = writeString(out, at + 4, h.senderId);
  at = writeString(out, at, h.msgId);
  assertInteger(h.sentAt, 0, Number.MAX_SAFE_INTEGER, 'header.sentAt');
  writeU64(out, at, h.sentAt);
  assertInteger(h.ctr, 0, U32_MAX, 'header.ctr');
  writeU32(out, at + 8, h.ctr);
  out.set(h.prev, at + 12);
  at += 12 + HASH_LENGTH;
  assertInteger(h.seenSeq, 0, Number.MAX_SAFE_INTEGER, 'header.seenSeq');
  writeU64(out, at, h.seenSeq);
  out.set(h.seenHash, at + 8);
  return { bytes: out, length: at + 8 + HASH_LENGTH };
}

/**
 * The bytes the sender signs, exactly what `signWithContext(key, 'latchkey.v1.msgsig', aad ||
 * nonce || ciphertext)` signs (`SIG_PREFIX || aad || nonce || ciphertext`), in one array with
 * room for `rest` bytes (nonce and ciphertext, for the caller to fill in at `nonceAt`). The header
 * is checked and written into it; `aad` is a view of it there, for AES-GCM.
 */
function signedFrame(
  header: EnvelopeHeader,
  rest: number,
): { signed: Uint8Array; aad: Uint8Array; nonceAt: number } {
  const { bytes, length } = writeAad(header);
  const nonceAt = SIG_PREFIX.length + length;
  const signed = new Uint8Array(nonceAt + rest);
  signed.set(SIG_PREFIX);
  signed.set(bytes.subarray(0, length), SIG_PREFIX.length);
  return { signed, aad: signed.subarray(SIG_PREFIX.length, nonceAt), nonceAt };
}

/**
 * Encrypts a message under the contact's content key and signs it with the sender's key.
 *
 * @param args.key - 32-byte content key of `header.contactId` at `header.epoch`.
 * @param args.header - The envelope header; bound as additional data.
 * @param args.plaintext - The message bytes.
 * @param args.signingKey - The sender's 32-byte Ed25519 secret key.
 * @param args.nonce - 12-byte nonce; omit it to get a fresh random one (the normal case). Never
 *   reuse a nonce under one key.
 * @returns The nonce, `ciphertext || tag`, and the 64-byte signature.
 * @throws {TypeError} if an argument has the wrong type or the header is malformed.
 * @throws {RangeError} if a key or the nonce has the wrong length, or a header number is out of
 *   range.
 */
export async function sealEnvelope(args: {
  key: Uint8Array;
  header: EnvelopeHeader;
  plaintext: Uint8Array;
  signingKey: Uint8Array;
  nonce?: Uint8Array;
}): Promise<{ nonce: Uint8Array; ciphertext: Uint8Array; sig: Uint8Array }> {
  const { key, header, plaintext, signingKey } = args;
  assertBytesLength(key, KEY_LENGTH, 'key');
  assertBytes(plaintext, 'plaintext');
  assertBytesLength(signingKey, ED25519_KEY_LENGTH, 'signingKey');
  const { signed, aad, nonceAt } = signedFrame(
    header,
    NONCE_LENGTH + plaintext.length + TAG_LENGTH,
  );
  let nonce: Uint8Array;
  if (args.nonce === undefined) {
    nonce = randomBytes(NONCE_LENGTH);
  } else {
    assertBytesLength(args.nonce, NONCE_LENGTH, 'nonce');
    nonce = new Uint8Array(args.nonce);
  }
  signed.set(nonce, nonceAt);
  const ciphertext = await aesGcmEncrypt(key, nonce, plaintext, aad);
  // Every backend returns ciphertext || tag; anything else must not be signed.
  if (ciphertext.length !== plaintext.length + TAG_LENGTH) throw new TypeError('AES-GCM output');
  signed.set(ciphertext, nonceAt + NONCE_LENGTH);
  const sig = await signAsync(signingKey, signed);
  return { nonce, ciphertext, sig };
}

/**
 * Verifies the sender's signature, then decrypts the message. A header with another version or
 * algorithm, a bad signature, a wrong key and any altered byte all give the same
 * `AuthenticationError`.
 *
 * @param args.key - 32-byte content key of `header.contactId` at `header.epoch`.
 * @param args.header - The envelope header as received.
 * @param args.nonce - The 12-byte nonce as received.
 * @param args.ciphertext - `ciphertext || tag` as received.
 * @param args.sig - The signature as received.
 * @param args.verifyKey - The sender's 32-byte Ed25519 public key, taken from a certificate that
 *   the caller has already checked against the key service's pinned key.
 * @returns The plaintext.
 * @throws {TypeError} if an argument has the wrong type or a header string is malformed.
 * @throws {RangeError} if `key`, `nonce` or `verifyKey` has the wrong length, or a header number
 *   is out of range.
 * @throws {AuthenticationError} if the signature or the AES-GCM tag does not verify.
 */
export async function openEnvelope(args: {
  key: Uint8Array;
  header: EnvelopeHeader;
  nonce: Uint8Array;
  ciphertext: Uint8Array;
  sig: Uint8Array;
  verifyKey: Uint8Array;
}): Promise<Uint8Array> {
  const { key, header, nonce, ciphertext, sig, verifyKey } = args;
  assertBytesLength(key, KEY_LENGTH, 'key');
  assertBytesLength(nonce, NONCE_LENGTH, 'nonce');
  assertBytes(ciphertext, 'ciphertext');
  assertBytes(sig, 'sig');
  assertBytesLength(verifyKey, ED25519_KEY_LENGTH, 'verifyKey');
  if (typeof header !== 'object' || header === null) {
    throw new TypeError('header must be an object');
  }
  // A version or algorithm this code does not know cannot be authenticated by it.
  if (header.v !== ENVELOPE_VERSION || header.alg !== ENVELOPE_ALG) {
    throw new AuthenticationError();
  }
  const { signed, aad, nonceAt } = signedFrame(header, NONCE_LENGTH + ciphertext.length);
  signed.set(nonce, nonceAt);
  signed.set(ciphertext, nonceAt + NONCE_LENGTH);
  if (!(await verifyAsync(verifyKey, signed, sig))) {
    throw new AuthenticationError();
  }
  return aesGcmDecrypt(key, nonce, ciphertext, aad);
}

/**
 * A short fingerprint of a content key for people to compare out of band: the first 16 bytes of
 * `SHA-256('latchkey.v1.fingerprint' || u32(len) contactId || u32(epoch) || u32(len) key)` as 8
 * groups of 4 uppercase hex digits, e.g. `'A1B2 C3D4 E5F6 0718 293A 4B5C 6D7E 8F90'`.
 *
 * @param key - The 32-byte content key.
 * @param contactId - Its contact.
 * @param epoch - Its epoch, an integer in `[0, 2^32 - 1]`.
 * @returns The 39-character fingerprint.
 * @throws {TypeError} if `key` is not a Uint8Array or `contactId` is not a well-formed string.
 * @throws {RangeError} if `key` is not 32 bytes or `epoch` is not a u32.
 */
export function keyFingerprint(key: Uint8Array, contactId: string, epoch: number): string {
  assertBytesLength(key, KEY_LENGTH, 'key');
  assertString(contactId, 'contactId');
  const digest = sha256(
    concatBytes(
      utf8Encode(FINGERPRINT_DOMAIN),
      lengthPrefixedString(contactId),
      u32(epoch, 'epoch'),
      u32(key.length, 'key.length'),
      key,
    ),
  );
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) {
    const group = (digest[i]! << 8) | digest[i + 1]!;
    groups.push(group.toString(16).toUpperCase().padStart(4, '0'));
  }
  return groups.join(' ');
}
