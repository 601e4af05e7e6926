/**
 * Ed25519 (RFC 8032 §5.1, PureEdDSA) on node:crypto, for sign.ts under the `node` export
 * condition: synchronous, OpenSSL's code. OpenSSL verifies the cofactorless equation, like
 * WebCrypto; sign.ts runs its strict pre-check (canonical encodings, small order, torsion,
 * S < L) in front of it, as in front of every backend. Arguments are checked by sign.ts.
 *
 * Keys are imported as JWK, which node turns into raw OpenSSL keys directly (importing PKCS#8 DER
 * goes through OpenSSL's decoders and costs ten times more), and cached: secret keys per array,
 * public keys by their bytes (_key-cache.ts).
 */
import { createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { nodeToBase64Url } from './_base64-node.ts';
import { ownBytes } from './_buffer-node.ts';
import { KeyCache, PublicKeyCache } from './_key-cache.ts';

const secretKeys = new KeyCache<KeyObject>();
const publicKeys = new PublicKeyCache<KeyObject>(1024);

function privateKey(secretKey: Uint8Array): KeyObject {
  return secretKeys.get(secretKey, (raw) =>
    createPrivateKey({
      key: {
        kty: 'OKP',
        crv: 'Ed25519',
        d: nodeToBase64Url(raw),
        x: nodeToBase64Url(ed25519.getPublicKey(raw)),
      },
      format: 'jwk',
    }),
  );
}

function publicKey(bytes: Uint8Array): KeyObject {
  return publicKeys.get(bytes, (raw) =>
    createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: nodeToBase64Url(raw) },
      format: 'jwk',
    }),
  );
}

/** The 64-byte signature of `message` under the 32-byte seed `secretKey`. */
export function nodeEd25519Sign(secretKey: Uint8Array, message: Uint8Array): Uint8Array {
  return ownBytes(sign(null, message, privateKey(secretKey)));
}

/** OpenSSL's verdict; only for keys and signatures that passed sign.ts's pre-check. */
export function nodeEd25519Verify(
  key: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): boolean {
  try {
    return verify(null, message, publicKey(key), signature);
  } catch {
    return false;
  }
}
