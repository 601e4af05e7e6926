/**
 * @latchkey/crypto: the pure cryptographic functions of Latchkey (no I/O, no clock, the same code
 * in browsers and Node). Each concern is also its own subpath export, e.g.
 * `@latchkey/crypto/envelope`.
 */
export {
  aeadBackend,
  aesGcmDecrypt,
  aesGcmEncrypt,
  AuthenticationError,
  setAeadBackend,
} from './aead.ts';
export type { AeadBackend } from './aead.ts';
export { concatBytes, fromBase64Url, toBase64Url, utf8Decode, utf8Encode } from './codec.ts';
export { constantTimeEqual } from './compare.ts';
export { generateX25519KeyPair, x25519PublicKey, x25519SharedSecret } from './dh.ts';
export { envelopeAad, keyFingerprint, openEnvelope, sealEnvelope } from './envelope.ts';
export type { EnvelopeHeader } from './envelope.ts';
export { ZERO_HASH, chainStep, transcriptStep } from './transcript.ts';
export {
  generateRecipientKeyPair,
  KEY_DELIVERY_INFO,
  openFromSender,
  sealToRecipient,
} from './hpke.ts';
export type {
  KeyDeliverySuite,
  OpenFromSenderInput,
  SealedDelivery,
  SealToRecipientInput,
} from './hpke.ts';
export { hkdfSha256 } from './kdf.ts';
export { hmacSha256, sha256 } from './mac.ts';
export { randomBytes } from './random.ts';
export {
  generateSigningKeyPair,
  isValidSigningPublicKey,
  sign,
  signingPublicKey,
  signWithContext,
  verify,
  verifyWithContext,
} from './sign.ts';
export { deriveKek, generateContentKey, unwrapContentKey, wrapContentKey } from './wrap.ts';
export type { WrapContext } from './wrap.ts';
