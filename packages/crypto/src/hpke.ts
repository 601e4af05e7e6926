/**
 * Hybrid Public Key Encryption, RFC 9180, and the key delivery of Latchkey built on it.
 *
 * Suites: KEM DHKEM(X25519, HKDF-SHA256) (0x0020) or X-Wing (0x647a,
 * draft-connolly-cfrg-xwing-kem-10: X25519 + ML-KEM-768, FIPS 203), KDF HKDF-SHA256 (0x0001),
 * AEAD AES-256-GCM (0x0002) or ChaCha20-Poly1305 (0x0003). All four modes (§5.1.1–§5.1.4) for
 * DHKEM; X-Wing is not an authenticated KEM, so it has base and psk only. Seal/Open use the
 * sequence-numbered nonces of §5.2, Export is §5.3, single-shot sealing is §6.1.
 *
 * Key delivery: a content key travels from the key service to a participant's client sealed
 * to a per-session recipient key, with `sealToRecipient` / `openFromSender`. Suite `'x25519'` is
 * DHKEM(X25519) + HKDF-SHA256 + AES-256-GCM; suite `'xwing'` swaps the KEM for X-Wing, so a
 * recorded delivery stays confidential as long as either X25519 or ML-KEM-768 holds.
 *
 * Everything here is synchronous and pure JS (@noble/*): no I/O, no Node-only APIs.
 */
import { assertBytes, assertString } from './_assert.ts';
import { lengthPrefixed, lengthPrefixedString } from './_encoding.ts';
import { AEAD_AES_256_GCM, AEAD_CHACHA20_POLY1305 } from './_hpke-aead.ts';
import type { HpkeAeadId } from './_hpke-aead.ts';
import {
  HpkeRecipientContext,
  HpkeSenderContext,
  MODE_AUTH,
  MODE_AUTH_PSK,
  MODE_BASE,
  MODE_PSK,
  resolveSuite,
  setupRecipient,
  setupSender,
} from './_hpke-context.ts';
import type { HpkeMode, HpkeSuite } from './_hpke-context.ts';
import { KEM_DHKEM_X25519_HKDF_SHA256, KEM_XWING } from './_hpke-kem.ts';
import type { HpkeKemId, HpkeKeyPair } from './_hpke-kem.ts';
import { KDF_HKDF_SHA256 } from './_hpke-labeled.ts';
import { concatBytes } from './codec.ts';

export { AuthenticationError } from './_errors.ts';
export {
  AEAD_AES_256_GCM,
  AEAD_CHACHA20_POLY1305,
  HpkeRecipientContext,
  HpkeSenderContext,
  KDF_HKDF_SHA256,
  KEM_DHKEM_X25519_HKDF_SHA256,
  KEM_XWING,
  MODE_AUTH,
  MODE_AUTH_PSK,
  MODE_BASE,
  MODE_PSK,
};
export type { HpkeAeadId, HpkeKemId, HpkeKeyPair, HpkeMode, HpkeSuite };

/** DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM. */
export const HPKE_X25519_SHA256_AES256GCM: HpkeSuite = Object.freeze({
  kemId: KEM_DHKEM_X25519_HKDF_SHA256,
  kdfId: KDF_HKDF_SHA256,
  aeadId: AEAD_AES_256_GCM,
});

/** DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305. */
export const HPKE_X25519_SHA256_CHACHA20POLY1305: HpkeSuite = Object.freeze({
  kemId: KEM_DHKEM_X25519_HKDF_SHA256,
  kdfId: KDF_HKDF_SHA256,
  aeadId: AEAD_CHACHA20_POLY1305,
});

/** X-Wing (draft), HKDF-SHA256, AES-256-GCM: the hybrid post-quantum suite. */
export const HPKE_XWING_SHA256_AES256GCM: HpkeSuite = Object.freeze({
  kemId: KEM_XWING,
  kdfId: KDF_HKDF_SHA256,
  aeadId: AEAD_AES_256_GCM,
});

const EMPTY = new Uint8Array(0);

/**
 * GenerateKeyPair() of the suite's KEM, from `crypto.getRandomValues`.
 *
 * @returns `secretKey` (32 bytes for both KEMs; X-Wing's is the seed of draft-10 §5.2) and
 *   `publicKey` (32 bytes for X25519, 1216 for X-Wing).
 * @throws {TypeError} if `suite` is not an object.
 * @throws {RangeError} if `suite` names an unsupported algorithm.
 */
export function generateHpkeKeyPair(suite: HpkeSuite): HpkeKeyPair {
  return resolveSuite(suite).kem.generateKeyPair();
}

/**
 * DeriveKeyPair(ikm) of the suite's KEM (RFC 9180 §7.1.3 for X25519; draft-10 §5.6 for X-Wing).
 *
 * @param ikm - At least 32 bytes of uniformly random input keying material.
 * @throws {TypeError} if `ikm` is not a Uint8Array or `suite` not an object.
 * @throws {RangeError} if `ikm` is shorter than 32 bytes, or `suite` is unsupported.
 */
export function deriveHpkeKeyPair(suite: HpkeSuite, ikm: Uint8Array): HpkeKeyPair {
  return resolveSuite(suite).kem.deriveKeyPair(ikm);
}

/** Setup result of the sender: the encapsulation to send and the context to seal with. */
export interface HpkeSenderSetup {
  readonly enc: Uint8Array;
  readonly context: HpkeSenderContext;
}

/**
 * SetupBaseS(pkR, info) (RFC 9180 §5.1.1).
 *
 * @throws {TypeError} if an argument has the wrong type.
 * @throws {RangeError} if `recipientPublicKey` is not a valid public key of the suite's KEM
 *   (wrong length, a low-order X25519 point, an ML-KEM key that fails the FIPS 203 check).
 */
export function setupBaseS(
  suite: HpkeSuite,
  recipientPublicKey: Uint8Array,
  info: Uint8Array,
): HpkeSenderSetup {
  return setupSender(suite, MODE_BASE, recipientPublicKey, info);
}

/**
 * SetupBaseR(enc, skR, info) (RFC 9180 §5.1.1).
 *
 * @throws {TypeError} if an argument has the wrong type.
 * @throws {RangeError} if `enc` or `recipientSecretKey` has the wrong length.
 * @throws {AuthenticationError} if `enc` cannot be decapsulated (a low-order X25519 point).
 */
export function setupBaseR(
  suite: HpkeSuite,
  enc: Uint8Array,
  recipientSecretKey: Uint8Array,
  info: Uint8Array,
): HpkeRecipientContext {
  return setupRecipient(suite, MODE_BASE, enc, recipientSecretKey, info);
}

/**
 * SetupPSKS(pkR, info, psk, psk_id) (RFC 9180 §5.1.2).
 *
 * @param psk - Pre-shared key, at least 32 bytes of entropy.
 * @param pskId - Non-empty identifier of the PSK.
 * @throws {TypeError} if an argument has the wrong type.
 * @throws {RangeError} as {@link setupBaseS}, or if `psk` is shorter than 32 bytes or `pskId`
 *   is empty.
 */
export function setupPskS(
  suite: HpkeSuite,
  recipientPublicKey: Uint8Array,
  info: Uint8Array,
  psk: Uint8Array,
  pskId: Uint8Array,
): HpkeSenderSetup {
  return setupSender(suite, MODE_PSK, recipientPublicKey, info, { psk, pskId });
}

/**
 * SetupPSKR(enc, skR, info, psk, psk_id) (RFC 9180 §5.1.2).
 *
 * @throws {TypeError} if an argument has the wrong type.
 * @throws {RangeError} as {@link setupBaseR} and {@link setupPskS}.
 * @throws {AuthenticationError} if `enc` cannot be decapsulated.
 */
export function setupPskR(
  suite: HpkeSuite,
  enc: Uint8Array,
  recipientSecretKey: Uint8Array,
  info: Uint8Array,
  psk: Uint8Array,
  pskId: Uint8Array,
): HpkeRecipientContext {
  return setupRecipient(suite, MODE_PSK, enc, recipientSecretKey, info, { psk, pskId });
}

/**
 * SetupAuthS(pkR, info, skS) (RFC 9180 §5.1.3). DHKEM only.
 *
 * @throws {TypeError} if an argument has the wrong type.
 * @throws {RangeError} as {@link setupBaseS}, or if the suite's KEM is X-Wing.
 */
export function setupAuthS(
  suite: HpkeSuite,
  recipientPublicKey: Uint8Array,
  info: Uint8Array,
  senderSecretKey: Uint8Array,
): HpkeSenderSetup {
  return setupSender(suite, MODE_AUTH, recipientPublicKey, info, { senderSecretKey });
}

/**
 * SetupAuthR(enc, skR, info, pkS) (RFC 9180 §5.1.3). DHKEM only.
 *
 * @throws {TypeError} if an argument has the wrong type.
 * @throws {RangeError} as {@link setupBaseR}, if `senderPublicKey` is invalid, or if the suite's
 *   KEM is X-Wing.
 * @throws {AuthenticationError} if `enc` cannot be decapsulated.
 */
export function setupAuthR(
  suite: HpkeSuite,
  enc: Uint8Array,
  recipientSecretKey: Uint8Array,
  info: Uint8Array,
  senderPublicKey: Uint8Array,
): HpkeRecipientContext {
  return setupRecipient(suite, MODE_AUTH, enc, recipientSecretKey, info, { senderPublicKey });
}

/**
 * SetupAuthPSKS(pkR, info, psk, psk_id, skS) (RFC 9180 §5.1.4). DHKEM only.
 *
 * @throws {TypeError} if an argument has the wrong type.
 * @throws {RangeError} as {@link setupPskS} and {@link setupAuthS}.
 */
export function setupAuthPskS(
  suite: HpkeSuite,
  recipientPublicKey: Uint8Array,
  info: Uint8Array,
  psk: Uint8Array,
  pskId: Uint8Array,
  senderSecretKey: Uint8Array,
): HpkeSenderSetup {
  return setupSender(suite, MODE_AUTH_PSK, recipientPublicKey, info, {
    psk,
    pskId,
    senderSecretKey,
  });
}

/**
 * SetupAuthPSKR(enc, skR, info, psk, psk_id, pkS) (RFC 9180 §5.1.4). DHKEM only.
 *
 * @throws {TypeError} if an argument has the wrong type.
 * @throws {RangeError} as {@link setupPskR} and {@link setupAuthR}.
 * @throws {AuthenticationError} if `enc` cannot be decapsulated.
 */
export function setupAuthPskR(
  suite: HpkeSuite,
  enc: Uint8Array,
  recipientSecretKey: Uint8Array,
  info: Uint8Array,
  psk: Uint8Array,
  pskId: Uint8Array,
  senderPublicKey: Uint8Array,
): HpkeRecipientContext {
  return setupRecipient(suite, MODE_AUTH_PSK, enc, recipientSecretKey, info, {
    psk,
    pskId,
    senderPublicKey,
  });
}

// ---- Key delivery ------------------------------------------------------------------------------

/** The two suites of key delivery: classical, or hybrid post-quantum. */
export type KeyDeliverySuite = 'x25519' | 'xwing';

/** Domain string at the head of every key-delivery HPKE `info`. */
export const KEY_DELIVERY_INFO = 'latchkey.v1.key-delivery';

const KEY_DELIVERY_INFO_PREFIX = lengthPrefixedString(KEY_DELIVERY_INFO);

function keyDeliverySuite(suite: unknown): HpkeSuite {
  assertString(suite, 'suite');
  switch (suite) {
    case 'x25519':
      return HPKE_X25519_SHA256_AES256GCM;
    case 'xwing':
      return HPKE_XWING_SHA256_AES256GCM;
    default:
      throw new RangeError("suite must be 'x25519' or 'xwing'");
  }
}

/** HPKE info = len || 'latchkey.v1.key-delivery' || len || caller info: injective, versioned. */
function keyDeliveryInfo(info: unknown): Uint8Array {
  assertBytes(info, 'info');
  return concatBytes(KEY_DELIVERY_INFO_PREFIX, lengthPrefixed(info));
}

function optionalAad(aad: unknown): Uint8Array {
  if (aad === undefined) {
    return EMPTY;
  }
  assertBytes(aad, 'aad');
  return aad;
}

function assertObject(value: unknown, name: string): asserts value is object {
  if (typeof value !== 'object' || value === null) {
    throw new TypeError(`${name} must be an object`);
  }
}

/**
 * Makes a per-session recipient key pair for key delivery. The secret key never leaves the
 * client; the public key is registered with the key service.
 *
 * @param suite - `'x25519'` (public key 32 bytes) or `'xwing'` (public key 1216 bytes). Both
 *   secret keys are 32 bytes.
 * @throws {TypeError} if `suite` is not a string.
 * @throws {RangeError} if `suite` is not `'x25519'` or `'xwing'`.
 */
export function generateRecipientKeyPair(suite: KeyDeliverySuite): HpkeKeyPair {
  return generateHpkeKeyPair(keyDeliverySuite(suite));
}

/** Input of {@link sealToRecipient}. */
export interface SealToRecipientInput {
  readonly suite: KeyDeliverySuite;
  /** The recipient's public key from {@link generateRecipientKeyPair}. */
  readonly recipientPublicKey: Uint8Array;
  /** What the delivery is bound to (e.g. an encoding of contact, epoch, participant). */
  readonly info: Uint8Array;
  /** Additional data authenticated with the ciphertext (absent = empty). */
  readonly aad?: Uint8Array;
  readonly plaintext: Uint8Array;
}

/** A sealed delivery: the KEM encapsulation and the AEAD ciphertext (with its 16-byte tag). */
export interface SealedDelivery {
  /** 32 bytes for `'x25519'`, 1120 bytes for `'xwing'`. */
  readonly enc: Uint8Array;
  readonly ciphertext: Uint8Array;
}

/**
 * Seals `plaintext` (typically a 32-byte content key) to a recipient public key with single-shot
 * HPKE in base mode (RFC 9180 §6.1, SealBase). The HPKE info is
 * `len || 'latchkey.v1.key-delivery' || len || info`, so a delivery made for one purpose or
 * context never opens under another.
 *
 * @returns `enc` and `ciphertext`; both must reach the recipient.
 * @throws {TypeError} if the input is not an object, `suite` not a string, or a byte field not a
 *   Uint8Array.
 * @throws {RangeError} if `suite` is unknown, or `recipientPublicKey` is not a valid public key of
 *   the suite (wrong length, low-order X25519 point, ML-KEM key failing the FIPS 203 check).
 */
export function sealToRecipient(input: SealToRecipientInput): SealedDelivery {
  assertObject(input, 'input');
  const suite = keyDeliverySuite(input.suite);
  const info = keyDeliveryInfo(input.info);
  const aad = optionalAad(input.aad);
  assertBytes(input.plaintext, 'plaintext');
  const { enc, context } = setupSender(suite, MODE_BASE, input.recipientPublicKey, info);
  return { enc, ciphertext: context.seal(input.plaintext, aad) };
}

/** Input of {@link openFromSender}. */
export interface OpenFromSenderInput {
  readonly suite: KeyDeliverySuite;
  readonly recipientSecretKey: Uint8Array;
  readonly enc: Uint8Array;
  /** The same `info` the sender used. */
  readonly info: Uint8Array;
  /** The same `aad` the sender used (absent = empty). */
  readonly aad?: Uint8Array;
  readonly ciphertext: Uint8Array;
}

/**
 * Opens a delivery made by {@link sealToRecipient} (RFC 9180 §6.1, OpenBase).
 *
 * @returns The plaintext.
 * @throws {TypeError} if the input is not an object, `suite` not a string, or a byte field not a
 *   Uint8Array.
 * @throws {RangeError} if `suite` is unknown, or `enc` or `recipientSecretKey` has the wrong
 *   length for the suite.
 * @throws {AuthenticationError} if anything was altered: `enc`, `ciphertext`, `info`, `aad`, or
 *   the wrong recipient key.
 */
export function openFromSender(input: OpenFromSenderInput): Uint8Array {
  assertObject(input, 'input');
  const suite = keyDeliverySuite(input.suite);
  const info = keyDeliveryInfo(input.info);
  const aad = optionalAad(input.aad);
  assertBytes(input.ciphertext, 'ciphertext');
  const context = setupRecipient(suite, MODE_BASE, input.enc, input.recipientSecretKey, info);
  return context.open(input.ciphertext, aad);
}
