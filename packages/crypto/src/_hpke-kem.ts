/**
 * Internal: the KEMs of HPKE.
 *
 * - DHKEM(X25519, HKDF-SHA256), kem id 0x0020 (RFC 9180 §4.1 and §7.1): Encap/Decap,
 *   AuthEncap/AuthDecap, DeriveKeyPair per §7.1.3, the all-zero check of §7.1.4 (in dh.ts).
 * - X-Wing, kem id 0x647a (draft-connolly-cfrg-xwing-kem-10 §5 and §5.6 "Use in HPKE"):
 *   X25519 + ML-KEM-768 with the SHA3-256 combiner, from @noble/post-quantum's
 *   `ml_kem768_x25519`. Its secret key is the 32-byte seed; DeriveKeyPair(ikm) is
 *   GenerateKeyPairDerand(SHAKE256(ikm, 32)). It has no AuthEncap. Draft, not yet an RFC.
 *
 * `encap` takes optional fixed randomness (`ikmE`) only so that published vectors can be
 * reproduced; everything public draws it from the CSPRNG.
 */
import { shake256 } from '@noble/hashes/sha3.js';
import { ml_kem768_x25519 } from '@noble/post-quantum/hybrid.js';
import { assertBytes, assertBytesLength } from './_assert.ts';
import { AuthenticationError } from './_errors.ts';
import { kemSuiteId, labeledExpand, labeledExtract } from './_hpke-labeled.ts';
import { concatBytes } from './codec.ts';
import { generateX25519KeyPair, x25519PublicKey, x25519SharedSecret } from './dh.ts';
import { randomBytes } from './random.ts';

export const KEM_DHKEM_X25519_HKDF_SHA256 = 0x0020;
export const KEM_XWING = 0x647a;
export type HpkeKemId = typeof KEM_DHKEM_X25519_HKDF_SHA256 | typeof KEM_XWING;

export interface HpkeKeyPair {
  readonly secretKey: Uint8Array;
  readonly publicKey: Uint8Array;
}

export interface Encapsulation {
  readonly sharedSecret: Uint8Array;
  readonly enc: Uint8Array;
}

export interface HpkeKem {
  readonly id: HpkeKemId;
  readonly nSecret: number;
  readonly nEnc: number;
  readonly nPk: number;
  readonly nSk: number;
  /** Whether AuthEncap/AuthDecap exist (modes auth and auth_psk). */
  readonly auth: boolean;
  /** @throws {RangeError} if `ikm` is shorter than Nsk bytes. */
  deriveKeyPair(ikm: Uint8Array): HpkeKeyPair;
  generateKeyPair(): HpkeKeyPair;
  /** @throws {RangeError} if `pkR` is not a valid public key of this KEM. */
  encap(pkR: Uint8Array, ikmE?: Uint8Array): Encapsulation;
  /**
   * @throws {RangeError} if `enc` or `skR` has the wrong length.
   * @throws {AuthenticationError} if `enc` is not a usable encapsulation.
   */
  decap(enc: Uint8Array, skR: Uint8Array): Uint8Array;
  authEncap(pkR: Uint8Array, skS: Uint8Array, ikmE?: Uint8Array): Encapsulation;
  authDecap(enc: Uint8Array, skR: Uint8Array, pkS: Uint8Array): Uint8Array;
}

function assertIkm(ikm: unknown, nsk: number): asserts ikm is Uint8Array {
  assertBytes(ikm, 'ikm');
  // RFC 9180 §7.1.3: ikm SHOULD have at least Nsk bytes of entropy; refuse anything shorter.
  if (ikm.length < nsk) {
    throw new RangeError(`ikm must be at least ${nsk} bytes`);
  }
}

// ---- DHKEM(X25519, HKDF-SHA256) ----------------------------------------------------------------

const X25519_SUITE = kemSuiteId(KEM_DHKEM_X25519_HKDF_SHA256);
const EMPTY = new Uint8Array(0);

function extractAndExpand(dh: Uint8Array, kemContext: Uint8Array): Uint8Array {
  const eaePrk = labeledExtract(X25519_SUITE, EMPTY, 'eae_prk', dh);
  return labeledExpand(X25519_SUITE, eaePrk, 'shared_secret', kemContext, 32);
}

function x25519DeriveKeyPair(ikm: Uint8Array): HpkeKeyPair {
  assertIkm(ikm, 32);
  const dkpPrk = labeledExtract(X25519_SUITE, EMPTY, 'dkp_prk', ikm);
  // §7.1.3: for X25519 the expanded bytes are the secret key as is (clamping happens in DH).
  const secretKey = labeledExpand(X25519_SUITE, dkpPrk, 'sk', EMPTY, 32);
  return { secretKey, publicKey: x25519PublicKey(secretKey) };
}

function ephemeral(ikmE: Uint8Array | undefined): HpkeKeyPair {
  return ikmE === undefined ? generateX25519KeyPair() : x25519DeriveKeyPair(ikmE);
}

/** DH with a peer-supplied point at the recipient: a low-order point fails authentication. */
function recipientDh(sk: Uint8Array, pk: Uint8Array): Uint8Array {
  try {
    return x25519SharedSecret(sk, pk);
  } catch {
    throw new AuthenticationError();
  }
}

const DHKEM_X25519: HpkeKem = {
  id: KEM_DHKEM_X25519_HKDF_SHA256,
  nSecret: 32,
  nEnc: 32,
  nPk: 32,
  nSk: 32,
  auth: true,
  deriveKeyPair: x25519DeriveKeyPair,
  generateKeyPair: generateX25519KeyPair,
  encap(pkR, ikmE) {
    assertBytesLength(pkR, 32, 'recipientPublicKey');
    const e = ephemeral(ikmE);
    const dh = x25519SharedSecret(e.secretKey, pkR);
    const enc = e.publicKey;
    return { sharedSecret: extractAndExpand(dh, concatBytes(enc, pkR)), enc };
  },
  decap(enc, skR) {
    assertBytesLength(enc, 32, 'enc');
    assertBytesLength(skR, 32, 'recipientSecretKey');
    const dh = recipientDh(skR, enc);
    return extractAndExpand(dh, concatBytes(enc, x25519PublicKey(skR)));
  },
  authEncap(pkR, skS, ikmE) {
    assertBytesLength(pkR, 32, 'recipientPublicKey');
    assertBytesLength(skS, 32, 'senderSecretKey');
    const e = ephemeral(ikmE);
    const dh = concatBytes(x25519SharedSecret(e.secretKey, pkR), x25519SharedSecret(skS, pkR));
    const enc = e.publicKey;
    const kemContext = concatBytes(enc, pkR, x25519PublicKey(skS));
    return { sharedSecret: extractAndExpand(dh, kemContext), enc };
  },
  authDecap(enc, skR, pkS) {
    assertBytesLength(enc, 32, 'enc');
    assertBytesLength(skR, 32, 'recipientSecretKey');
    assertBytesLength(pkS, 32, 'senderPublicKey');
    const dh = concatBytes(recipientDh(skR, enc), x25519SharedSecret(skR, pkS));
    const kemContext = concatBytes(enc, x25519PublicKey(skR), pkS);
    return extractAndExpand(dh, kemContext);
  },
};

// ---- X-Wing (draft-connolly-cfrg-xwing-kem-10) ------------------------------------------------

const XWING_PK = 1216;
const XWING_SK = 32;
const XWING_CT = 1120;
const XWING_ESEED = 64;

/**
 * GenerateKeyPairDerand(seed) of draft-10 §5.2: the decapsulation key is the seed itself.
 * @throws {RangeError} if `seed` is not 32 bytes.
 */
export function xwingKeyPairFromSeed(seed: Uint8Array): HpkeKeyPair {
  assertBytesLength(seed, XWING_SK, 'seed');
  const { publicKey } = ml_kem768_x25519.keygen(seed);
  return { secretKey: Uint8Array.from(seed), publicKey };
}

function noAuth(): never {
  throw new RangeError('X-Wing is not an authenticated KEM: auth modes are not available');
}

const XWING: HpkeKem = {
  id: KEM_XWING,
  nSecret: 32,
  nEnc: XWING_CT,
  nPk: XWING_PK,
  nSk: XWING_SK,
  auth: false,
  deriveKeyPair(ikm) {
    assertIkm(ikm, XWING_SK);
    return xwingKeyPairFromSeed(shake256(ikm, { dkLen: XWING_SK }));
  },
  generateKeyPair: () => xwingKeyPairFromSeed(randomBytes(XWING_SK)),
  encap(pkR, ikmE) {
    assertBytesLength(pkR, XWING_PK, 'recipientPublicKey');
    const eseed = ikmE ?? randomBytes(XWING_ESEED);
    assertBytesLength(eseed, XWING_ESEED, 'ikmE');
    let result: { cipherText: Uint8Array; sharedSecret: Uint8Array };
    try {
      // EncapsulateDerand(pk, eseed): ML-KEM coins eseed[0:32], X25519 ephemeral eseed[32:64].
      result = ml_kem768_x25519.encapsulate(pkR, Uint8Array.from(eseed));
    } catch {
      // ML-KEM encapsulation key check (FIPS 203 §7.2) or a low-order X25519 part.
      throw new RangeError('recipientPublicKey is not a valid X-Wing public key');
    }
    return { sharedSecret: result.sharedSecret, enc: result.cipherText };
  },
  decap(enc, skR) {
    assertBytesLength(enc, XWING_CT, 'enc');
    assertBytesLength(skR, XWING_SK, 'recipientSecretKey');
    try {
      // A modified ML-KEM ciphertext is implicitly rejected (a pseudorandom secret, so the AEAD
      // fails later); a low-order X25519 part throws here.
      return ml_kem768_x25519.decapsulate(enc, skR);
    } catch {
      throw new AuthenticationError();
    }
  },
  authEncap: noAuth,
  authDecap: noAuth,
};

/** @throws {RangeError} if `id` is not a supported KEM id. */
export function hpkeKem(id: number): HpkeKem {
  switch (id) {
    case KEM_DHKEM_X25519_HKDF_SHA256:
      return DHKEM_X25519;
    case KEM_XWING:
      return XWING;
    default:
      throw new RangeError('unsupported HPKE KEM id');
  }
}
