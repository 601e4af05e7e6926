/**
 * Key delivery with HPKE (RFC 9180, base mode): the content key leaves the key service sealed
 * to the caller's per-session public key (`x25519`, or the hybrid `xwing` = X25519 + ML-KEM-768
 * so that recorded traffic stays safe if X25519 falls), bound by `info` to contact, epoch and
 * participant. TLS still protects the request; this adds end-to-end protection of the key
 * against anything that terminates TLS in front of the key service and keeps it out of logs.
 */
import { fromBase64Url, toBase64Url, utf8Encode } from '@latchkey/crypto/codec';
import { sealToRecipient } from '@latchkey/crypto/hpke';
import {
  LatchkeyError,
  keyDeliveryInfo,
  type DeliveryKey,
  type SealedKey,
} from '@latchkey/protocol';

/**
 * Seals `key` to the delivery key.
 * @throws LatchkeyError BAD_REQUEST when the public key is not a valid key of its suite.
 */
export function sealKey(
  delivery: DeliveryKey,
  key: Uint8Array,
  contactId: string,
  epoch: number,
  participantId: string,
): SealedKey {
  let sealed: { enc: Uint8Array; ciphertext: Uint8Array };
  try {
    sealed = sealToRecipient({
      suite: delivery.suite,
      recipientPublicKey: fromBase64Url(delivery.publicKey),
      info: utf8Encode(keyDeliveryInfo(contactId, epoch, participantId)),
      plaintext: key,
    });
  } catch (err) {
    if (err instanceof TypeError || err instanceof RangeError) {
      throw new LatchkeyError('BAD_REQUEST', 'invalid request body at delivery.publicKey');
    }
    throw err;
  }
  return {
    suite: delivery.suite,
    enc: toBase64Url(sealed.enc),
    ciphertext: toBase64Url(sealed.ciphertext),
  };
}
