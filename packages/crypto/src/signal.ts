/**
 * Sealing and opening signals (typing, seen: docs/protocol.md "Signals: typing and seen"):
 * AES-256-GCM (aead.ts) under the contact's content key with a fresh random nonce, and an
 * Ed25519 signature (sign.ts) by the sender's certified session key, as envelopes are sealed but
 * under their own labels, so that a signal can never be taken for a message or the other way round.
 *
 * Additional data (`signalAad`), integers big-endian:
 *   'latchkey.v1.signal' || u32(len) contactId || u32(epoch) || u32(len) senderId
 * Signature: `signWithContext(signingKey, 'latchkey.v1.sigsig', aad || nonce || ciphertext)`.
 * `openSignal` checks the signature before it decrypts and reports every failure as the same
 * `AuthenticationError`. Freshness (the signed `sentAt` inside) is the caller's check.
 */
import { assertBytes, assertBytesLength, assertInteger, assertString } from './_assert.ts';
import { lengthPrefixedString, u32 } from './_encoding.ts';
import { AuthenticationError } from './_errors.ts';
import { aesGcmDecrypt, aesGcmEncrypt } from './aead.ts';
import { concatBytes, utf8Encode } from './codec.ts';
import { randomBytes } from './random.ts';
import { signWithContextAsync, verifyWithContextAsync } from './sign.ts';

const AAD_DOMAIN = 'latchkey.v1.signal';
const SIG_CONTEXT = 'latchkey.v1.sigsig';
const KEY_LENGTH = 32;
const NONCE_LENGTH = 12;
const ED25519_KEY_LENGTH = 32;
const U32_MAX = 0xffff_ffff;

/** Who a signal is from and where it belongs: bound as additional data. */
export interface SignalHeader {
  contactId: string;
  /** Epoch of the content key, an integer in `[0, 2^32 - 1]`. */
  epoch: number;
  senderId: string;
}

/**
 * The additional data of a signal (see the file header).
 * @throws {TypeError} if a string is not well formed. @throws {RangeError} if epoch is not a u32.
 */
export function signalAad(h: SignalHeader): Uint8Array {
  assertString(h.contactId, 'header.contactId');
  assertString(h.senderId, 'header.senderId');
  assertInteger(h.epoch, 0, U32_MAX, 'header.epoch');
  return concatBytes(
    utf8Encode(AAD_DOMAIN),
    lengthPrefixedString(h.contactId),
    u32(h.epoch),
    lengthPrefixedString(h.senderId),
  );
}

/**
 * Encrypts a signal's plaintext under the contact key and signs it with the sender's key.
 * @returns The fresh nonce, `ciphertext || tag` and the 64-byte signature.
 * @throws {TypeError|RangeError} on malformed arguments.
 */
export async function sealSignal(args: {
  key: Uint8Array;
  header: SignalHeader;
  plaintext: Uint8Array;
  signingKey: Uint8Array;
}): Promise<{ nonce: Uint8Array; ciphertext: Uint8Array; sig: Uint8Array }> {
  const { key, header, plaintext, signingKey } = args;
  assertBytesLength(key, KEY_LENGTH, 'key');
  assertBytes(plaintext, 'plaintext');
  assertBytesLength(signingKey, ED25519_KEY_LENGTH, 'signingKey');
  const aad = signalAad(header);
  const nonce = randomBytes(NONCE_LENGTH);
  const ciphertext = await aesGcmEncrypt(key, nonce, plaintext, aad);
  const sig = await signWithContextAsync(
    signingKey,
    SIG_CONTEXT,
    concatBytes(aad, nonce, ciphertext),
  );
  return { nonce, ciphertext, sig };
}

/**
 * Verifies the sender's signature, then decrypts. A bad signature, a wrong key, contact, epoch
 * or sender and any altered byte all give the same `AuthenticationError`.
 * @param args.verifyKey - The sender's Ed25519 public key from a certificate the caller checked.
 * @throws {TypeError|RangeError} on malformed arguments. @throws {AuthenticationError}.
 */
export async function openSignal(args: {
  key: Uint8Array;
  header: SignalHeader;
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
  const aad = signalAad(header);
  const signed = concatBytes(aad, nonce, ciphertext);
  if (!(await verifyWithContextAsync(verifyKey, SIG_CONTEXT, signed, sig))) {
    throw new AuthenticationError();
  }
  return aesGcmDecrypt(key, nonce, ciphertext, aad);
}
