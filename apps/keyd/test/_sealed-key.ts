/**
 * Test helper: asks the key service for a content key the way clients do over plain HTTP,
 * sealed to a fresh X25519 delivery key (HPKE), and opens it.
 */
import { fromBase64Url, toBase64Url, utf8Encode } from '@latchkey/crypto/codec';
import { generateRecipientKeyPair, openFromSender } from '@latchkey/crypto/hpke';
import { keyDeliveryInfo, type ContactKeyResponse } from '@latchkey/protocol';

/** POSTs a sealed contact-key request; resolves to the HTTP status and the opened key (base64url). */
export async function fetchSealedKey(
  url: string,
  token: string,
  participantId: string,
  body: Record<string, unknown> = {},
): Promise<{ status: number; key: string | undefined; body: unknown }> {
  const pair = generateRecipientKeyPair('x25519');
  const res = await fetch(`${url}/v1/contact-key`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      ...body,
      delivery: { suite: 'x25519', publicKey: toBase64Url(pair.publicKey) },
    }),
  });
  const json = (await res.json()) as ContactKeyResponse;
  if (res.status !== 200 || json.sealedKey === undefined)
    return { status: res.status, key: undefined, body: json };
  const key = openFromSender({
    suite: 'x25519',
    recipientSecretKey: pair.secretKey,
    enc: fromBase64Url(json.sealedKey.enc),
    info: utf8Encode(keyDeliveryInfo(json.contactId, json.epoch, participantId)),
    ciphertext: fromBase64Url(json.sealedKey.ciphertext),
  });
  return { status: res.status, key: toBase64Url(key), body: json };
}
