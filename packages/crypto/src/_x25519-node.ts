/**
 * X25519 (RFC 7748) on node:crypto, for dh.ts under the `node` export condition: OpenSSL's code,
 * about thirty times faster here than the pure-JS scalar multiplication (1.7 ms per shared
 * secret). The key service seals every content key it hands out to a fresh X25519 key (HPKE),
 * so a join burst is bound by this. Arguments are checked by dh.ts.
 *
 * A secret key is imported as a JWK (`d`); OpenSSL derives the public key from `d` and ignores
 * the `x` we must pass along (32 zero bytes), and `x25519PublicKey` reads the derived one back.
 * Should a Node version refuse that, the import falls back to PKCS#8 DER (ten times slower,
 * still far ahead of pure JS). Public keys are imported as JWK: OpenSSL masks the top bit and
 * reduces a non-canonical u as RFC 7748 §5 asks (backends-agree.test.ts checks both against
 * noble). A shared secret of all zeros (a low-order public key, RFC 7748 §6.1) makes OpenSSL's
 * derivation fail: that is the RangeError dh.ts promises.
 */
import { createPrivateKey, createPublicKey, diffieHellman, type KeyObject } from 'node:crypto';
import { nodeToBase64Url } from './_base64-node.ts';
import { ownBytes } from './_buffer-node.ts';
import { KeyCache, PublicKeyCache } from './_key-cache.ts';

const secretKeys = new KeyCache<KeyObject>();
const publicKeys = new PublicKeyCache<KeyObject>(1024);
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const ZERO_X = Buffer.alloc(32).toString('base64url');

function importSecret(raw: Uint8Array): KeyObject {
  try {
    return createPrivateKey({
      key: { kty: 'OKP', crv: 'X25519', d: nodeToBase64Url(raw), x: ZERO_X },
      format: 'jwk',
    });
  } catch {
    return createPrivateKey({
      key: Buffer.concat([PKCS8_PREFIX, raw]),
      format: 'der',
      type: 'pkcs8',
    });
  }
}

function privateKey(secret: Uint8Array): KeyObject {
  return secretKeys.get(secret, importSecret);
}

function publicKey(bytes: Uint8Array): KeyObject {
  return publicKeys.get(bytes, (raw) =>
    createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: nodeToBase64Url(raw) }, format: 'jwk' }),
  );
}

/** `X25519(secret, 9)`. */
export function nodeX25519PublicKey(secret: Uint8Array): Uint8Array {
  const jwk = createPublicKey(privateKey(secret)).export({ format: 'jwk' });
  return ownBytes(Buffer.from(jwk.x ?? '', 'base64url'));
}

/**
 * `X25519(secret, publicKey)`.
 * @throws {RangeError} if the result would be all zeros (a low-order public key).
 */
export function nodeX25519SharedSecret(secret: Uint8Array, publicKeyBytes: Uint8Array): Uint8Array {
  try {
    return ownBytes(
      diffieHellman({ privateKey: privateKey(secret), publicKey: publicKey(publicKeyBytes) }),
    );
  } catch {
    throw new RangeError('publicKey is a low-order point');
  }
}
