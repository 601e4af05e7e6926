/**
 * Signals sealed and opened (signal.ts): a round trip, and every change an attacker could make
 * (tampered bytes, another contact, epoch, sender, key or signer, an envelope's labels) refused.
 */
import { describe, expect, it } from 'vitest';
import { AuthenticationError } from '../src/aead.ts';
import { utf8Decode, utf8Encode } from '../src/codec.ts';
import { randomBytes } from '../src/random.ts';
import { generateSigningKeyPair } from '../src/sign.ts';
import { openSignal, sealSignal, signalAad, type SignalHeader } from '../src/signal.ts';
import { envelopeAad } from '../src/envelope.ts';

const key = randomBytes(32);
const signer = generateSigningKeyPair();
const header: SignalHeader = { contactId: 'c1', epoch: 3, senderId: 'p1' };
const text = '{"kind":"typing","state":"start","sentAt":1}';

async function sealed() {
  return sealSignal({ key, header, plaintext: utf8Encode(text), signingKey: signer.secretKey });
}

describe('signals', () => {
  it('open to what was sealed, with a fresh nonce each time', async () => {
    const a = await sealed();
    const b = await sealed();
    expect(a.nonce).not.toEqual(b.nonce);
    const out = await openSignal({ key, header, ...a, verifyKey: signer.publicKey });
    expect(utf8Decode(out)).toBe(text);
  });

  it('refuse a tampered ciphertext, nonce or signature', async () => {
    const s = await sealed();
    for (const field of ['ciphertext', 'nonce', 'sig'] as const) {
      const bad = { ...s, [field]: s[field].slice() };
      bad[field][0] = (bad[field][0] ?? 0) ^ 1;
      await expect(
        openSignal({ key, header, ...bad, verifyKey: signer.publicKey }),
      ).rejects.toBeInstanceOf(AuthenticationError);
    }
  });

  it('refuse another contact, epoch, sender, key or signer', async () => {
    const s = await sealed();
    const wrong: SignalHeader[] = [
      { ...header, contactId: 'c2' },
      { ...header, epoch: 4 },
      { ...header, senderId: 'p2' },
    ];
    for (const h of wrong) {
      await expect(
        openSignal({ key, header: h, ...s, verifyKey: signer.publicKey }),
      ).rejects.toBeInstanceOf(AuthenticationError);
    }
    await expect(
      openSignal({ key: randomBytes(32), header, ...s, verifyKey: signer.publicKey }),
    ).rejects.toBeInstanceOf(AuthenticationError);
    await expect(
      openSignal({ key, header, ...s, verifyKey: generateSigningKeyPair().publicKey }),
    ).rejects.toBeInstanceOf(AuthenticationError);
  });

  it('bind a domain of their own: a signal AAD never starts like an envelope AAD', () => {
    const env = envelopeAad({
      v: 2,
      alg: 'latchkey.v1.aes256gcm',
      contactId: 'c1',
      epoch: 3,
      senderId: 'p1',
      msgId: 'm',
      sentAt: 1,
      ctr: 1,
      prev: new Uint8Array(32),
      seenSeq: 0,
      seenHash: new Uint8Array(32),
    });
    const sig = signalAad(header);
    expect(utf8Decode(sig.subarray(0, 18))).toBe('latchkey.v1.signal');
    expect(utf8Decode(env.subarray(0, 18))).not.toBe('latchkey.v1.signal');
  });

  it('keep a contact/sender boundary: moving bytes between ids changes the AAD', () => {
    expect(signalAad({ contactId: 'ab', epoch: 1, senderId: 'c' })).not.toEqual(
      signalAad({ contactId: 'a', epoch: 1, senderId: 'bc' }),
    );
  });
});
