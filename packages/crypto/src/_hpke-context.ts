/**
 * Internal: the HPKE key schedule (RFC 9180 §5.1), the encryption context with its
 * sequence-numbered nonces (§5.2) and the secret export (§5.3), and the four setup modes
 * (§5.1.1–§5.1.4) for both sides. KDF is always HKDF-SHA256.
 *
 * `setupSender` accepts fixed ephemeral randomness (`ikmE`) for the published vectors; the public
 * API in hpke.ts never passes it.
 */
import { assertBytes, assertInteger } from './_assert.ts';
import { hpkeAead } from './_hpke-aead.ts';
import type { HpkeAead, HpkeAeadId } from './_hpke-aead.ts';
import { hpkeKem } from './_hpke-kem.ts';
import type { HpkeKem, HpkeKemId } from './_hpke-kem.ts';
import {
  KDF_HKDF_SHA256,
  NH,
  hpkeSuiteId,
  i2osp,
  labeledExpand,
  labeledExtract,
} from './_hpke-labeled.ts';
import { concatBytes } from './codec.ts';

export const MODE_BASE = 0x00;
export const MODE_PSK = 0x01;
export const MODE_AUTH = 0x02;
export const MODE_AUTH_PSK = 0x03;
export type HpkeMode = typeof MODE_BASE | typeof MODE_PSK | typeof MODE_AUTH | typeof MODE_AUTH_PSK;

/** A cipher suite by its registry ids. The KDF is HKDF-SHA256 (0x0001) in every suite here. */
export interface HpkeSuite {
  readonly kemId: HpkeKemId;
  readonly kdfId: typeof KDF_HKDF_SHA256;
  readonly aeadId: HpkeAeadId;
}

export interface ResolvedSuite {
  readonly kem: HpkeKem;
  readonly aead: HpkeAead;
  readonly suiteId: Uint8Array;
}

/**
 * @throws {TypeError} if `suite` is not an object.
 * @throws {RangeError} if one of its ids is not supported.
 */
export function resolveSuite(suite: HpkeSuite): ResolvedSuite {
  if (typeof suite !== 'object' || suite === null) {
    throw new TypeError('suite must be an object');
  }
  if (suite.kdfId !== KDF_HKDF_SHA256) {
    throw new RangeError('unsupported HPKE KDF id');
  }
  const kem = hpkeKem(suite.kemId);
  const aead = hpkeAead(suite.aeadId);
  return { kem, aead, suiteId: hpkeSuiteId(kem.id, KDF_HKDF_SHA256, aead.id) };
}

/** The outputs of KeySchedule (§5.1), with the intermediate values the vectors list. */
export interface KeyScheduleResult {
  readonly keyScheduleContext: Uint8Array;
  readonly secret: Uint8Array;
  readonly key: Uint8Array;
  readonly baseNonce: Uint8Array;
  readonly exporterSecret: Uint8Array;
}

const EMPTY = new Uint8Array(0);

/** RFC 9180 §5.1.2: the PSK needs at least 32 bytes of entropy. */
const MIN_PSK_LENGTH = 32;

function verifyPskInputs(mode: HpkeMode, psk: Uint8Array, pskId: Uint8Array): void {
  const gotPsk = psk.length > 0;
  const gotPskId = pskId.length > 0;
  if (gotPsk !== gotPskId) {
    throw new RangeError('psk and pskId must be given together');
  }
  const pskMode = mode === MODE_PSK || mode === MODE_AUTH_PSK;
  if (gotPsk && !pskMode) {
    throw new RangeError('a psk was given in a mode without one');
  }
  if (!gotPsk && pskMode) {
    throw new RangeError('this mode needs a psk and a pskId');
  }
  if (gotPsk && psk.length < MIN_PSK_LENGTH) {
    throw new RangeError(`psk must be at least ${MIN_PSK_LENGTH} bytes`);
  }
}

/** KeySchedule<ROLE>(mode, shared_secret, info, psk, psk_id) of §5.1, minus the context object. */
export function keySchedule(
  suite: ResolvedSuite,
  mode: HpkeMode,
  sharedSecret: Uint8Array,
  info: Uint8Array,
  psk: Uint8Array = EMPTY,
  pskId: Uint8Array = EMPTY,
): KeyScheduleResult {
  verifyPskInputs(mode, psk, pskId);
  const { suiteId, aead } = suite;
  const pskIdHash = labeledExtract(suiteId, EMPTY, 'psk_id_hash', pskId);
  const infoHash = labeledExtract(suiteId, EMPTY, 'info_hash', info);
  const keyScheduleContext = concatBytes(Uint8Array.of(mode), pskIdHash, infoHash);
  const secret = labeledExtract(suiteId, sharedSecret, 'secret', psk);
  return {
    keyScheduleContext,
    secret,
    key: labeledExpand(suiteId, secret, 'key', keyScheduleContext, aead.nk),
    baseNonce: labeledExpand(suiteId, secret, 'base_nonce', keyScheduleContext, aead.nn),
    exporterSecret: labeledExpand(suiteId, secret, 'exp', keyScheduleContext, NH),
  };
}

/** Shared part of both contexts: the nonce sequence (§5.2) and Export (§5.3). */
abstract class HpkeContext {
  readonly #suite: ResolvedSuite;
  readonly #exporterSecret: Uint8Array;
  protected readonly key: Uint8Array;
  protected readonly baseNonce: Uint8Array;
  #seq = 0;

  constructor(suite: ResolvedSuite, schedule: KeyScheduleResult) {
    this.#suite = suite;
    this.key = schedule.key;
    this.baseNonce = schedule.baseNonce;
    this.#exporterSecret = schedule.exporterSecret;
  }

  protected get aead(): HpkeAead {
    return this.#suite.aead;
  }

  /** ComputeNonce(seq) = base_nonce XOR I2OSP(seq, Nn). */
  protected nonce(): Uint8Array {
    // §5.2 allows 2^96 - 1 messages; a JS integer stops earlier, which is far beyond any use.
    if (this.#seq >= Number.MAX_SAFE_INTEGER) {
      throw new RangeError('message limit reached for this HPKE context');
    }
    const seqBytes = i2osp(this.#seq, this.baseNonce.length);
    return this.baseNonce.map((byte, i) => byte ^ (seqBytes[i] ?? 0));
  }

  /** IncrementSeq(): only after a successful seal or open. */
  protected incrementSeq(): void {
    this.#seq += 1;
  }

  /** The sequence number the next seal or open uses. */
  get seq(): number {
    return this.#seq;
  }

  /**
   * Export(exporter_context, L) = LabeledExpand(exporter_secret, "sec", exporter_context, L)
   * (RFC 9180 §5.3): a secret bound to this context, for other uses than the AEAD.
   *
   * @param exporterContext - What the secret is for; distinct per use.
   * @param length - Output length in bytes, `0..8160`.
   * @throws {TypeError} if `exporterContext` is not a Uint8Array or `length` not a number.
   * @throws {RangeError} if `length` is not an integer in `[0, 8160]`.
   */
  export(exporterContext: Uint8Array, length: number): Uint8Array {
    assertBytes(exporterContext, 'exporterContext');
    assertInteger(length, 0, 255 * NH, 'length');
    return labeledExpand(this.#suite.suiteId, this.#exporterSecret, 'sec', exporterContext, length);
  }
}

/** The sender's encryption context (ContextS). */
export class HpkeSenderContext extends HpkeContext {
  /**
   * ContextS.Seal(aad, pt): encrypts under the next sequence number.
   *
   * @param plaintext - Data to encrypt.
   * @param aad - Additional data to authenticate (absent = empty).
   * @returns `ciphertext || tag` (16 bytes longer than `plaintext`).
   * @throws {TypeError} if an argument is not a Uint8Array.
   * @throws {RangeError} if the context has sealed 2^53 - 1 messages.
   */
  seal(plaintext: Uint8Array, aad: Uint8Array = EMPTY): Uint8Array {
    assertBytes(plaintext, 'plaintext');
    assertBytes(aad, 'aad');
    const ct = this.aead.seal(this.key, this.nonce(), aad, plaintext);
    this.incrementSeq();
    return ct;
  }
}

/** The recipient's encryption context (ContextR). */
export class HpkeRecipientContext extends HpkeContext {
  /**
   * ContextR.Open(aad, ct): decrypts the message of the next sequence number. A failed open does
   * not advance the sequence.
   *
   * @param ciphertext - `ciphertext || tag` from the sender's seal of the same sequence number.
   * @param aad - The additional data given to seal (absent = empty).
   * @returns The plaintext.
   * @throws {TypeError} if an argument is not a Uint8Array.
   * @throws {AuthenticationError} if the ciphertext does not authenticate.
   */
  open(ciphertext: Uint8Array, aad: Uint8Array = EMPTY): Uint8Array {
    assertBytes(ciphertext, 'ciphertext');
    assertBytes(aad, 'aad');
    const pt = this.aead.open(this.key, this.nonce(), aad, ciphertext);
    this.incrementSeq();
    return pt;
  }
}

/** Mode-specific inputs; which ones a mode needs is checked. */
export interface SenderOptions {
  readonly psk?: Uint8Array;
  readonly pskId?: Uint8Array;
  /** Sender's secret key, for the auth modes. */
  readonly senderSecretKey?: Uint8Array;
  /** Fixed ephemeral randomness: DHKEM ikmE, or X-Wing's 64-byte eseed. Tests only. */
  readonly ikmE?: Uint8Array;
}

export interface RecipientOptions {
  readonly psk?: Uint8Array;
  readonly pskId?: Uint8Array;
  /** Sender's public key, for the auth modes. */
  readonly senderPublicKey?: Uint8Array;
}

function checkMode(mode: HpkeMode, kem: HpkeKem): boolean {
  assertInteger(mode, MODE_BASE, MODE_AUTH_PSK, 'mode');
  const auth = mode === MODE_AUTH || mode === MODE_AUTH_PSK;
  if (auth && !kem.auth) {
    throw new RangeError('this KEM does not support the auth modes');
  }
  return auth;
}

function optionalBytes(value: Uint8Array | undefined, name: string): Uint8Array {
  if (value === undefined) {
    return EMPTY;
  }
  assertBytes(value, name);
  return value;
}

function required(value: Uint8Array | undefined, name: string): Uint8Array {
  if (value === undefined) {
    throw new TypeError(`${name} is required in the auth modes`);
  }
  return value;
}

/** SetupBaseS / SetupPSKS / SetupAuthS / SetupAuthPSKS (§5.1.1–§5.1.4). */
export function setupSender(
  suite: HpkeSuite,
  mode: HpkeMode,
  recipientPublicKey: Uint8Array,
  info: Uint8Array,
  options: SenderOptions = {},
): { enc: Uint8Array; context: HpkeSenderContext } {
  const resolved = resolveSuite(suite);
  const { kem } = resolved;
  const auth = checkMode(mode, kem);
  assertBytes(recipientPublicKey, 'recipientPublicKey');
  assertBytes(info, 'info');
  const psk = optionalBytes(options.psk, 'psk');
  const pskId = optionalBytes(options.pskId, 'pskId');
  verifyPskInputs(mode, psk, pskId);
  if (options.ikmE !== undefined) {
    assertBytes(options.ikmE, 'ikmE');
  }
  const { sharedSecret, enc } = auth
    ? kem.authEncap(
        recipientPublicKey,
        required(options.senderSecretKey, 'senderSecretKey'),
        options.ikmE,
      )
    : kem.encap(recipientPublicKey, options.ikmE);
  const schedule = keySchedule(resolved, mode, sharedSecret, info, psk, pskId);
  return { enc, context: new HpkeSenderContext(resolved, schedule) };
}

/** SetupBaseR / SetupPSKR / SetupAuthR / SetupAuthPSKR (§5.1.1–§5.1.4). */
export function setupRecipient(
  suite: HpkeSuite,
  mode: HpkeMode,
  enc: Uint8Array,
  recipientSecretKey: Uint8Array,
  info: Uint8Array,
  options: RecipientOptions = {},
): HpkeRecipientContext {
  const resolved = resolveSuite(suite);
  const { kem } = resolved;
  const auth = checkMode(mode, kem);
  assertBytes(enc, 'enc');
  assertBytes(recipientSecretKey, 'recipientSecretKey');
  assertBytes(info, 'info');
  const psk = optionalBytes(options.psk, 'psk');
  const pskId = optionalBytes(options.pskId, 'pskId');
  verifyPskInputs(mode, psk, pskId);
  const sharedSecret = auth
    ? kem.authDecap(enc, recipientSecretKey, required(options.senderPublicKey, 'senderPublicKey'))
    : kem.decap(enc, recipientSecretKey);
  const schedule = keySchedule(resolved, mode, sharedSecret, info, psk, pskId);
  return new HpkeRecipientContext(resolved, schedule);
}
