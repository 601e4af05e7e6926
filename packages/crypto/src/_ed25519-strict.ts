/**
 * The strict Ed25519 rules of sign.ts (RFC 8032 §5.1.3, §5.1.7; small order and torsion), checked
 * by our own code in front of every backend so that node:crypto, WebCrypto and noble give the
 * same verdict on every input: see sign.ts's header for the rules and why.
 */
import { ED25519_TORSION_SUBGROUP, ed25519 } from '@noble/curves/ed25519.js';
import { bytesToHex, equalBytes, hexToBytes, numberToBytesLE } from '@noble/curves/utils.js';
import { publicBytesId } from './_key-cache.ts';

const PUBLIC_KEY_LENGTH = 32;
const SIGNATURE_LENGTH = 64;
const Point = ed25519.Point;

/** Verdicts of {@link isValidSigningPublicKey} by key: the torsion check costs a scalar multiple. */
const keyVerdicts = new Map<string, boolean>();
const KEY_VERDICTS_MAX = 1024;

/** `bytes` with the sign bit of x cleared: the encoding of y alone. */
function yEncoding(bytes: Uint8Array): Uint8Array {
  const y = Uint8Array.from(bytes);
  y[31]! &= 0x7f;
  return y;
}

/** y of every small-order point (each once): R (or A) is small order iff its y is one of these. */
const SMALL_ORDER_Y: readonly Uint8Array[] = [
  ...new Set(ED25519_TORSION_SUBGROUP.map((h) => bytesToHex(yEncoding(hexToBytes(h))))),
].map(hexToBytes);

function checkPublicKey(publicKey: Uint8Array): boolean {
  try {
    // Strict decoding: y < p, on the curve, no x = 0 with the sign bit set.
    const point = Point.fromBytes(publicKey, false);
    return equalBytes(point.toBytes(), publicKey) && !point.isSmallOrder() && point.isTorsionFree();
  } catch {
    return false;
  }
}

/**
 * Whether `publicKey` is an Ed25519 public key Latchkey accepts: 32 bytes, the canonical encoding
 * of a point on the curve (RFC 8032 §5.1.3) in the prime-order subgroup, not of small order. Every
 * key made by {@link generateSigningKeyPair} or {@link signingPublicKey} is. The key service
 * refuses to certify any other, and every verifier here refuses signatures under it. Never throws.
 *
 * @param publicKey - Candidate 32-byte public key.
 * @returns `true` only for a canonical, on-curve, torsion-free key that is not of small order.
 */
export function isValidSigningPublicKey(publicKey: Uint8Array): boolean {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== PUBLIC_KEY_LENGTH) return false;
  const id = publicBytesId(publicKey);
  const known = keyVerdicts.get(id);
  if (known !== undefined) return known;
  const verdict = checkPublicKey(publicKey);
  if (keyVerdicts.size >= KEY_VERDICTS_MAX) keyVerdicts.delete(keyVerdicts.keys().next().value!);
  keyVerdicts.set(id, verdict);
  return verdict;
}

/** L (the group order) and p (the field prime), 32 bytes little-endian. */
const L_BYTES = numberToBytesLE(Point.Fn.ORDER, 32);
const P_BYTES = numberToBytesLE(Point.Fp.ORDER, 32);

/**
 * Whether the 32-byte little-endian number at `a[at..at+32]`, its top bit cleared when `top` is
 * 0x7f, is below `b`. Variable time: it compares public values (a signature), and it spares two
 * BigInt conversions and any copy per verification.
 */
function lessThanLE(a: Uint8Array, at: number, b: Uint8Array, top: 0x7f | 0xff): boolean {
  const high = a[at + 31]! & top;
  if (high !== b[31]) return high < b[31]!;
  for (let i = 30; i >= 0; i--) {
    if (a[at + i] !== b[i]) return a[at + i]! < b[i]!;
  }
  return false;
}

/** Whether R's y (the signature's first 32 bytes, sign bit cleared) is a small-order point's. */
function isSmallOrderR(signature: Uint8Array): boolean {
  next: for (const y of SMALL_ORDER_Y) {
    if ((signature[31]! & 0x7f) !== y[31]) continue;
    for (let i = 0; i < 31; i++) if (signature[i] !== y[i]) continue next;
    return true;
  }
  return false;
}

/**
 * Cheap checks of the signature's encoding, without decoding R: S < L, and R the canonical
 * encoding (y < p) of no small-order point. A small-order R with x = 0 and the sign bit set is
 * caught by the y test too.
 */
function isStrictSignatureEncoding(signature: Uint8Array): boolean {
  return (
    lessThanLE(signature, 32, L_BYTES, 0xff) &&
    lessThanLE(signature, 0, P_BYTES, 0x7f) &&
    !isSmallOrderR(signature)
  );
}

/** Arguments of the right types and lengths, a valid key and a strictly encoded signature. */
export function passesPrecheck(publicKey: unknown, message: unknown, signature: unknown): boolean {
  return (
    publicKey instanceof Uint8Array &&
    message instanceof Uint8Array &&
    signature instanceof Uint8Array &&
    signature.length === SIGNATURE_LENGTH &&
    isValidSigningPublicKey(publicKey) &&
    isStrictSignatureEncoding(signature)
  );
}

/**
 * noble's strict verification (cofactored: [8][S]B = [8]R + [8][k]A) plus R torsion-free, which for
 * a torsion-free A is exactly the cofactorless equation [S]B = R + [k]A that WebCrypto checks.
 * Call only after {@link passesPrecheck}.
 */
export function nobleVerify(
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): boolean {
  try {
    return (
      ed25519.verify(signature, message, publicKey, { zip215: false }) &&
      Point.fromBytes(signature.subarray(0, 32), false).isTorsionFree()
    );
  } catch {
    return false;
  }
}
