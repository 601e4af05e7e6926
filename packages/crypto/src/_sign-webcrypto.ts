/**
 * Ed25519 (RFC 8032 §5.1) through WebCrypto (`crypto.subtle`, Secure Curves), for sign.ts's async
 * functions where the platform has it (current browsers; Node without the `node` condition). Like
 * OpenSSL it checks the cofactorless equation; sign.ts's strict pre-check runs in front of it.
 * Keys are cached as in _key-cache.ts: secret keys per array, public keys by their bytes.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { nobleVerify } from './_ed25519-strict.ts';
import { KeyCache, PublicKeyCache } from './_key-cache.ts';

const ED25519 = { name: 'Ed25519' } as const;
const secretKeys = new KeyCache<Promise<CryptoKey>>();
const publicKeys = new PublicKeyCache<Promise<CryptoKey>>(1024);

const base64Url = (bytes: Uint8Array): string => {
  let s = '';
  for (const x of bytes) s += String.fromCharCode(x);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
};

/**
 * The signature by WebCrypto. @throws whatever the platform throws when it lacks Ed25519 (sign.ts
 * then falls back to noble).
 */
export async function webcryptoEd25519Sign(
  api: SubtleCrypto,
  secretKey: Uint8Array,
  message: Uint8Array,
): Promise<Uint8Array> {
  const key = await secretKeys.get(secretKey, (raw) =>
    api.importKey(
      'jwk',
      { kty: 'OKP', crv: 'Ed25519', d: base64Url(raw), x: base64Url(ed25519.getPublicKey(raw)) },
      ED25519,
      false,
      ['sign'],
    ),
  );
  return new Uint8Array(await api.sign(ED25519, key, new Uint8Array(message)));
}

/** WebCrypto's verdict; only for keys and signatures that passed the pre-check. Never throws. */
export async function webcryptoEd25519Verify(
  api: SubtleCrypto,
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  let key: CryptoKey;
  try {
    key = await publicKeys.get(publicKey, (raw) =>
      api.importKey('raw', raw, ED25519, false, ['verify']),
    );
  } catch {
    // Some platforms refuse an invalid point at import: then noble decides.
    return nobleVerify(publicKey, message, signature);
  }
  try {
    return await api.verify(ED25519, key, new Uint8Array(signature), new Uint8Array(message));
  } catch {
    return false;
  }
}
