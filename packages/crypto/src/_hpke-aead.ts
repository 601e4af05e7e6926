/**
 * Internal: the AEADs of HPKE (RFC 9180 §7.3) as synchronous functions over @noble/ciphers:
 * AES-256-GCM (aead id 0x0002) and ChaCha20-Poly1305 (0x0003, RFC 8439). Both take Nk = 32,
 * Nn = 12, Nt = 16 and append the tag to the ciphertext.
 */
import { gcm } from '@noble/ciphers/aes.js';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { AuthenticationError } from './_errors.ts';

export const AEAD_AES_256_GCM = 0x0002;
export const AEAD_CHACHA20_POLY1305 = 0x0003;
export type HpkeAeadId = typeof AEAD_AES_256_GCM | typeof AEAD_CHACHA20_POLY1305;

export interface HpkeAead {
  readonly id: HpkeAeadId;
  readonly nk: number;
  readonly nn: number;
  readonly nt: number;
  seal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array;
  /** @throws {AuthenticationError} if the tag does not verify or the input is shorter than it. */
  open(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array): Uint8Array;
}

type Cipher = (
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
) => {
  encrypt(data: Uint8Array): Uint8Array;
  decrypt(data: Uint8Array): Uint8Array;
};

function aead(id: HpkeAeadId, cipher: Cipher): HpkeAead {
  return {
    id,
    nk: 32,
    nn: 12,
    nt: 16,
    seal: (key, nonce, aad, plaintext) => cipher(key, nonce, aad).encrypt(plaintext),
    open(key, nonce, aad, ciphertext) {
      if (ciphertext.length < 16) {
        throw new AuthenticationError();
      }
      try {
        return cipher(key, nonce, aad).decrypt(ciphertext);
      } catch {
        throw new AuthenticationError();
      }
    },
  };
}

export const AES_256_GCM: HpkeAead = aead(AEAD_AES_256_GCM, gcm);
export const CHACHA20_POLY1305: HpkeAead = aead(AEAD_CHACHA20_POLY1305, chacha20poly1305);

/** @throws {RangeError} if `id` is not a supported AEAD id. */
export function hpkeAead(id: number): HpkeAead {
  switch (id) {
    case AEAD_AES_256_GCM:
      return AES_256_GCM;
    case AEAD_CHACHA20_POLY1305:
      return CHACHA20_POLY1305;
    default:
      throw new RangeError('unsupported HPKE AEAD id');
  }
}
