/**
 * Receiving content keys sealed with HPKE (RFC 9180, base mode) to a per-session key pair that
 * never leaves this client: `x25519` by default, or the hybrid `xwing` (X25519 + ML-KEM-768).
 * A key service that answers a sealed request with a plain key is refused (no downgrade).
 */
import { fromBase64Url, toBase64Url, utf8Encode } from '@latchkey/crypto/codec';
import { generateRecipientKeyPair, openFromSender } from '@latchkey/crypto/hpke';
import {
  LatchkeyError,
  keyDeliveryInfo,
  type ContactKeyResponse,
  type DeliveryKey,
  type KeyDeliverySuite,
} from '@latchkey/protocol';

export type KeyDeliveryMode = KeyDeliverySuite | 'plain';

export class KeyReceiver {
  readonly #suite: KeyDeliverySuite | null;
  readonly #pair: { secretKey: Uint8Array; publicKey: Uint8Array } | null;
  readonly #participantId: string;

  /** @throws TypeError on an unknown mode. */
  constructor(mode: KeyDeliveryMode, participantId: string) {
    if (mode !== 'plain' && mode !== 'x25519' && mode !== 'xwing')
      throw new TypeError(`unknown key delivery mode: ${String(mode)}`);
    this.#suite = mode === 'plain' ? null : mode;
    this.#pair = this.#suite ? generateRecipientKeyPair(this.#suite) : null;
    this.#participantId = participantId;
  }

  /** The `delivery` field of a key request (undefined in plain mode). */
  request(): DeliveryKey | undefined {
    if (!this.#suite || !this.#pair) return undefined;
    return { suite: this.#suite, publicKey: toBase64Url(this.#pair.publicKey) } as DeliveryKey;
  }

  /**
   * The content key of a response.
   * @throws LatchkeyError KEY_UNAVAILABLE when the key is not sealed as asked, or fails to open.
   */
  open(res: ContactKeyResponse): Uint8Array {
    if (!this.#suite || !this.#pair) {
      if (res.key === undefined)
        throw new LatchkeyError('KEY_UNAVAILABLE', 'key service sent no key');
      return fromBase64Url(res.key);
    }
    const sealed = res.sealedKey;
    if (!sealed || sealed.suite !== this.#suite) {
      throw new LatchkeyError(
        'KEY_UNAVAILABLE',
        'key service did not seal the key to this session',
      );
    }
    try {
      return openFromSender({
        suite: sealed.suite,
        recipientSecretKey: this.#pair.secretKey,
        enc: fromBase64Url(sealed.enc),
        info: utf8Encode(keyDeliveryInfo(res.contactId, res.epoch, this.#participantId)),
        ciphertext: fromBase64Url(sealed.ciphertext),
      });
    } catch {
      throw new LatchkeyError('KEY_UNAVAILABLE', 'sealed key did not open');
    }
  }
}
