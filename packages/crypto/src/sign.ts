/**
 * Ed25519 signatures (RFC 8032 §5.1, PureEdDSA), via @noble/curves. Verification is strict, and
 * the same on every backend: our own pre-check refuses, before any backend sees them,
 * - public keys that are not canonical (y >= p, or x = 0 with the sign bit set), that do not
 *   decode to a point (RFC 8032 §5.1.3), that have small order (the 8-torsion points: a signature
 *   R = identity, S = 0 then verifies for every message) or a torsion component;
 * - signatures whose S is not below L (§5.1.7: not malleable), whose R is not canonical or is a
 *   small-order point.
 * The backends then check the equation: WebCrypto (OpenSSL, BoringSSL) the cofactorless one, noble
 * the cofactored one, followed here by a check that R has no torsion component. For keys that pass
 * the pre-check the two give the same answer on every input.
 *
 * `signWithContext` adds Latchkey's own domain separation: it signs `u32(len(context)) ||
 * context || message`, so that a signature made for one purpose (e.g. `'latchkey.v1.msgsig'`)
 * never verifies for another. A key used with contexts must not also sign raw messages.
 */
import { ED25519_TORSION_SUBGROUP, ed25519 } from '@noble/curves/ed25519.js';
import { bytesToHex, bytesToNumberLE, equalBytes, hexToBytes } from '@noble/curves/utils.js';
import { assertBytes, assertBytesLength, assertString } from './_assert.ts';
import { lengthPrefixedString } from './_encoding.ts';
import { concatBytes } from './codec.ts';
import { randomBytes } from './random.ts';

const SECRET_KEY_LENGTH = 32;
const PUBLIC_KEY_LENGTH = 32;
const SIGNATURE_LENGTH = 64;
const Point = ed25519.Point;

// --- Strict pre-check (RFC 8032 §5.1.3, §5.1.7; small order and torsion) ----------------------

/** Verdicts of {@link isValidSigningPublicKey} by key: the torsion check costs a scalar multiple. */
const keyVerdicts = new Map<string, boolean>();
const KEY_VERDICTS_MAX = 1024;

/** `bytes` with the sign bit of x cleared: the encoding of y alone. */
function yEncoding(bytes: Uint8Array): Uint8Array {
  const y = Uint8Array.from(bytes);
  y[31]! &= 0x7f;
  return y;
}

/** y of every small-order point: R (or A) is small order iff its y is one of these. */
const SMALL_ORDER_Y = new Set(
  ED25519_TORSION_SUBGROUP.map((h) => bytesToHex(yEncoding(hexToBytes(h)))),
);

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
  const id = bytesToHex(publicKey);
  const known = keyVerdicts.get(id);
  if (known !== undefined) return known;
  const verdict = checkPublicKey(publicKey);
  if (keyVerdicts.size >= KEY_VERDICTS_MAX) keyVerdicts.delete(keyVerdicts.keys().next().value!);
  keyVerdicts.set(id, verdict);
  return verdict;
}

/**
 * Cheap checks of the signature's encoding, without decoding R: S < L, and R the canonical
 * encoding (y < p) of no small-order point. A small-order R with x = 0 and the sign bit set is
 * caught by the y test too.
 */
function isStrictSignatureEncoding(signature: Uint8Array): boolean {
  const y = yEncoding(signature.subarray(0, 32));
  return (
    Point.Fn.isValid(bytesToNumberLE(signature.subarray(32))) &&
    Point.Fp.isValid(bytesToNumberLE(y)) &&
    !SMALL_ORDER_Y.has(bytesToHex(y))
  );
}

/** Arguments of the right types and lengths, a valid key and a strictly encoded signature. */
function passesPrecheck(publicKey: unknown, message: unknown, signature: unknown): boolean {
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
function nobleVerify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  try {
    return (
      ed25519.verify(signature, message, publicKey, { zip215: false }) &&
      Point.fromBytes(signature.subarray(0, 32), false).isTorsionFree()
    );
  } catch {
    return false;
  }
}

/**
 * Generates a new Ed25519 key pair from 32 bytes of `crypto.getRandomValues`.
 *
 * @returns `secretKey` (the 32-byte RFC 8032 seed) and `publicKey` (32 bytes).
 */
export function generateSigningKeyPair(): { secretKey: Uint8Array; publicKey: Uint8Array } {
  const secretKey = randomBytes(SECRET_KEY_LENGTH);
  return { secretKey, publicKey: ed25519.getPublicKey(secretKey) };
}

/**
 * Derives the public key of an Ed25519 secret key (RFC 8032 §5.1.5).
 *
 * @param secretKey - 32-byte secret key (seed).
 * @returns The 32-byte public key.
 * @throws {TypeError} if `secretKey` is not a Uint8Array.
 * @throws {RangeError} if `secretKey` is not 32 bytes.
 */
export function signingPublicKey(secretKey: Uint8Array): Uint8Array {
  assertBytesLength(secretKey, SECRET_KEY_LENGTH, 'secretKey');
  return ed25519.getPublicKey(secretKey);
}

/**
 * Signs a message with Ed25519 (RFC 8032 §5.1.6). Deterministic.
 *
 * @param secretKey - 32-byte secret key (seed).
 * @param message - Message of any length.
 * @returns The 64-byte signature.
 * @throws {TypeError} if an argument is not a Uint8Array.
 * @throws {RangeError} if `secretKey` is not 32 bytes.
 */
export function sign(secretKey: Uint8Array, message: Uint8Array): Uint8Array {
  assertBytesLength(secretKey, SECRET_KEY_LENGTH, 'secretKey');
  assertBytes(message, 'message');
  return ed25519.sign(message, secretKey);
}

/**
 * Verifies an Ed25519 signature strictly (RFC 8032 §5.1.7 and the rules in this module's header).
 * Never throws: malformed keys, keys that fail {@link isValidSigningPublicKey}, signatures of the
 * wrong length or type, non-canonical encodings and small-order R all give `false`.
 *
 * @param publicKey - 32-byte public key.
 * @param message - The signed message.
 * @param signature - 64-byte signature.
 * @returns `true` only if the signature is valid for this key and message.
 */
export function verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  return (
    passesPrecheck(publicKey, message, signature) && nobleVerify(publicKey, message, signature)
  );
}

function contextMessage(context: string, message: Uint8Array): Uint8Array {
  assertString(context, 'context');
  if (context.length === 0) {
    throw new RangeError('context must not be empty');
  }
  assertBytes(message, 'message');
  return concatBytes(lengthPrefixedString(context), message);
}

/**
 * Signs `u32(len(context)) || UTF-8(context) || message` with Ed25519: a signature bound to one
 * purpose. Latchkey contexts are versioned strings such as `'latchkey.v1.msgsig'`.
 *
 * @param secretKey - 32-byte secret key (seed).
 * @param context - Non-empty purpose string.
 * @param message - Message of any length.
 * @returns The 64-byte signature.
 * @throws {TypeError} if `context` is not a well-formed string or another argument is not a
 *   Uint8Array.
 * @throws {RangeError} if `secretKey` is not 32 bytes or `context` is empty.
 */
export function signWithContext(
  secretKey: Uint8Array,
  context: string,
  message: Uint8Array,
): Uint8Array {
  assertBytesLength(secretKey, SECRET_KEY_LENGTH, 'secretKey');
  return ed25519.sign(contextMessage(context, message), secretKey);
}

/**
 * Verifies a signature made by {@link signWithContext} for the same context. Never throws.
 *
 * @param publicKey - 32-byte public key.
 * @param context - The purpose string the signer used.
 * @param message - The signed message.
 * @param signature - 64-byte signature.
 * @returns `true` only if the signature is valid for this key, context and message.
 */
export function verifyWithContext(
  publicKey: Uint8Array,
  context: string,
  message: Uint8Array,
  signature: Uint8Array,
): boolean {
  let signed: Uint8Array;
  try {
    signed = contextMessage(context, message);
  } catch {
    return false;
  }
  return verify(publicKey, signed, signature);
}

// --- Platform Ed25519 (WebCrypto) -------------------------------------------------------------
// The same signatures as above, computed by the platform where WebCrypto has Ed25519 (Node,
// current browsers: 12-16x faster than pure JS here), else by noble. Both implement RFC 8032;
// the same pre-check runs first on both. test/sign-backends.test.ts checks that they agree,
// test/ed25519-wycheproof.test.ts and test/ed25519-small-order.test.ts that they are strict.

type Ed25519Backend = 'webcrypto' | 'noble';
let ed25519Selected: Ed25519Backend | 'auto' = 'auto';
/** Set once WebCrypto has refused Ed25519 (an older browser): noble from then on. */
let webcryptoEd25519Broken = false;

interface CachedEdKey {
  readonly raw: Uint8Array;
  readonly key: Promise<CryptoKey>;
}
const edSecretCache = new WeakMap<Uint8Array, CachedEdKey>();
const edPublicCache = new WeakMap<Uint8Array, CachedEdKey>();

function edSubtle(): SubtleCrypto | undefined {
  if (ed25519Selected === 'noble' || webcryptoEd25519Broken) return undefined;
  return (globalThis.crypto as Crypto | undefined)?.subtle;
}

/** Which Ed25519 implementation the async functions use. */
export function ed25519Backend(): Ed25519Backend {
  return edSubtle() === undefined ? 'noble' : 'webcrypto';
}

/** Forces an Ed25519 backend for the async functions (tests, benchmarks). */
export function setEd25519Backend(backend: Ed25519Backend | 'auto'): void {
  if (backend !== 'auto' && backend !== 'webcrypto' && backend !== 'noble') {
    throw new RangeError("backend must be 'webcrypto', 'noble' or 'auto'");
  }
  ed25519Selected = backend;
}

function cachedKey(
  cache: WeakMap<Uint8Array, CachedEdKey>,
  bytes: Uint8Array,
  load: (raw: Uint8Array<ArrayBuffer>) => Promise<CryptoKey>,
): Promise<CryptoKey> {
  const hit = cache.get(bytes);
  if (
    hit !== undefined &&
    hit.raw.length === bytes.length &&
    hit.raw.every((b, i) => b === bytes[i])
  )
    return hit.key;
  const raw = new Uint8Array(bytes);
  const key = load(raw);
  cache.set(bytes, { raw, key });
  key.catch(() => cache.delete(bytes));
  return key;
}

const b64u = (b: Uint8Array): string => {
  let s = '';
  for (const x of b) s += String.fromCharCode(x);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
};

/**
 * Async {@link sign}: the same signature (Ed25519 is deterministic), computed by WebCrypto
 * where available.
 * @throws {TypeError|RangeError} as {@link sign}.
 */
export async function signAsync(secretKey: Uint8Array, message: Uint8Array): Promise<Uint8Array> {
  assertBytesLength(secretKey, SECRET_KEY_LENGTH, 'secretKey');
  assertBytes(message, 'message');
  const api = edSubtle();
  if (api !== undefined) {
    try {
      const key = await cachedKey(edSecretCache, secretKey, (raw) =>
        api.importKey(
          'jwk',
          { kty: 'OKP', crv: 'Ed25519', d: b64u(raw), x: b64u(ed25519.getPublicKey(raw)) },
          { name: 'Ed25519' },
          false,
          ['sign'],
        ),
      );
      return new Uint8Array(await api.sign({ name: 'Ed25519' }, key, new Uint8Array(message)));
    } catch {
      if (ed25519Selected === 'webcrypto')
        throw new TypeError('WebCrypto Ed25519 is not available');
      webcryptoEd25519Broken = true;
    }
  }
  return ed25519.sign(message, secretKey);
}

/** Async {@link verify} (the same strict rules), by WebCrypto where available. Never throws. */
export async function verifyAsync(
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  if (!passesPrecheck(publicKey, message, signature)) return false;
  const api = edSubtle();
  if (api !== undefined) {
    let key: CryptoKey;
    try {
      key = await cachedKey(edPublicCache, publicKey, (raw) =>
        api.importKey('raw', raw, { name: 'Ed25519' }, false, ['verify']),
      );
    } catch {
      // Some platforms refuse an invalid point at import: then noble decides.
      return nobleVerify(publicKey, message, signature);
    }
    try {
      return await api.verify(
        { name: 'Ed25519' },
        key,
        new Uint8Array(signature),
        new Uint8Array(message),
      );
    } catch {
      return false;
    }
  }
  return nobleVerify(publicKey, message, signature);
}

/**
 * Async {@link signWithContext}, by WebCrypto where available.
 * @throws {TypeError|RangeError} as {@link signWithContext}.
 */
export function signWithContextAsync(
  secretKey: Uint8Array,
  context: string,
  message: Uint8Array,
): Promise<Uint8Array> {
  assertBytesLength(secretKey, SECRET_KEY_LENGTH, 'secretKey');
  return signAsync(secretKey, contextMessage(context, message));
}

/** Async {@link verifyWithContext}, by WebCrypto where available. Never throws. */
export async function verifyWithContextAsync(
  publicKey: Uint8Array,
  context: string,
  message: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  let signed: Uint8Array;
  try {
    signed = contextMessage(context, message);
  } catch {
    return false;
  }
  return verifyAsync(publicKey, signed, signature);
}
