/**
 * Internal: the labeled HKDF-SHA256 of HPKE (RFC 9180 §4, KDF id 0x0001) and the suite
 * identifiers it is keyed by (§4.1 for a KEM, §5.1 for the whole suite).
 *
 *   LabeledExtract(salt, label, ikm) = Extract(salt, "HPKE-v1" || suite_id || label || ikm)
 *   LabeledExpand(prk, label, info, L) =
 *     Expand(prk, I2OSP(L, 2) || "HPKE-v1" || suite_id || label || info, L)
 */
import { expand, extract } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { assertInteger } from './_assert.ts';
import { concatBytes, utf8Encode } from './codec.ts';

/** Nh of HKDF-SHA256: the length of Extract's output. */
export const KDF_HKDF_SHA256 = 0x0001;
export const NH = 32;

const HPKE_V1 = utf8Encode('HPKE-v1');

/** I2OSP(n, w): `n` as a `w`-byte big-endian string (RFC 8017 §4.1); here n < 2^16 or < 2^53. */
export function i2osp(n: number, w: number): Uint8Array {
  const out = new Uint8Array(w);
  let rest = n;
  for (let i = w - 1; i >= 0 && rest > 0; i--) {
    out[i] = rest % 256;
    rest = Math.floor(rest / 256);
  }
  return out;
}

/** suite_id of a KEM: "KEM" || I2OSP(kem_id, 2) (RFC 9180 §4.1). */
export function kemSuiteId(kemId: number): Uint8Array {
  return concatBytes(utf8Encode('KEM'), i2osp(kemId, 2));
}

/** suite_id of a full suite: "HPKE" || I2OSP(kem_id, 2) || I2OSP(kdf_id, 2) || I2OSP(aead_id, 2). */
export function hpkeSuiteId(kemId: number, kdfId: number, aeadId: number): Uint8Array {
  return concatBytes(utf8Encode('HPKE'), i2osp(kemId, 2), i2osp(kdfId, 2), i2osp(aeadId, 2));
}

/** LabeledExtract with HKDF-SHA256. An empty salt means HashLen zero bytes (RFC 5869 §2.2). */
export function labeledExtract(
  suiteId: Uint8Array,
  salt: Uint8Array,
  label: string,
  ikm: Uint8Array,
): Uint8Array {
  return extract(sha256, concatBytes(HPKE_V1, suiteId, utf8Encode(label), ikm), salt);
}

/**
 * LabeledExpand with HKDF-SHA256.
 * @throws {RangeError} if `length` is not an integer in [0, 255 * Nh] (RFC 5869 §2.3).
 */
export function labeledExpand(
  suiteId: Uint8Array,
  prk: Uint8Array,
  label: string,
  info: Uint8Array,
  length: number,
): Uint8Array {
  assertInteger(length, 0, 255 * NH, 'length');
  const labeledInfo = concatBytes(i2osp(length, 2), HPKE_V1, suiteId, utf8Encode(label), info);
  return expand(sha256, prk, labeledInfo, length);
}
