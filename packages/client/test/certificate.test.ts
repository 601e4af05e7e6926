/**
 * Sender certificates (src/certificate.ts): the signature check is cached per certificate, keyed
 * by the signature text; a hit needs the very same body text, and the session key handed out is
 * the caller's own copy.
 */
import { describe, expect, it } from 'vitest';
import { toBase64Url, utf8Encode } from '@latchkey/crypto/codec';
import { generateSigningKeyPair, signWithContext } from '@latchkey/crypto/sign';
import { CERT_ALG, LatchkeyError, type CertificateBody } from '@latchkey/protocol';
import { CERT_CONTEXT, verifyCertificate } from '../src/certificate.ts';

const service = generateSigningKeyPair();
const T0 = 1_800_000_000_000;

function certificate(over: Partial<CertificateBody> = {}) {
  const session = generateSigningKeyPair();
  const body: CertificateBody = {
    v: 1,
    alg: CERT_ALG,
    contactId: 'c_1',
    participantId: 'p_1',
    role: 'visitor',
    publicKey: toBase64Url(session.publicKey),
    issuedAt: T0,
    notAfter: T0 + 3_600_000,
    epoch: 0,
    ...over,
  };
  const bytes = utf8Encode(JSON.stringify(body));
  const cert = {
    body: toBase64Url(bytes),
    sig: toBase64Url(signWithContext(service.secretKey, CERT_CONTEXT, bytes)),
  };
  return { cert, session };
}

const expected = { contactId: 'c_1', senderId: 'p_1', sentAt: T0 + 1000, epoch: 0 };

describe('verifyCertificate', () => {
  it('gives the certified session key, a fresh copy each time', async () => {
    const { cert, session } = certificate();
    const first = await verifyCertificate(cert, service.publicKey, expected);
    expect(first.publicKey).toEqual(session.publicKey);
    first.publicKey.fill(0);
    const again = await verifyCertificate(cert, service.publicKey, expected);
    expect(again.publicKey).toEqual(session.publicKey);
  });

  it('never takes a cached signature for another body', async () => {
    const genuine = certificate();
    const other = certificate(); // same contact, sender and validity, another session key
    await verifyCertificate(genuine.cert, service.publicKey, expected);
    const forged = { sig: genuine.cert.sig, body: other.cert.body };
    const err = await verifyCertificate(forged, service.publicKey, expected).catch(
      (e: unknown) => e,
    );
    expect(LatchkeyError.is(err, 'DECRYPT_FAILED')).toBe(true);
    // The genuine certificate still verifies (the failure cached nothing).
    const ok = await verifyCertificate(genuine.cert, service.publicKey, expected);
    expect(ok.publicKey).toEqual(genuine.session.publicKey);
  });

  it('still checks contact, sender, epoch and validity on a cache hit', async () => {
    const { cert } = certificate();
    await verifyCertificate(cert, service.publicKey, expected);
    for (const wrong of [
      { contactId: 'c_2' },
      { senderId: 'p_9' },
      { epoch: 1 },
      { sentAt: T0 + 3_600_001 },
    ]) {
      const err = await verifyCertificate(cert, service.publicKey, { ...expected, ...wrong }).catch(
        (e: unknown) => e,
      );
      expect(LatchkeyError.is(err, 'DECRYPT_FAILED'), JSON.stringify(wrong)).toBe(true);
    }
  });

  it('refuses a certificate signed by another key', async () => {
    const { cert } = certificate();
    const err = await verifyCertificate(cert, generateSigningKeyPair().publicKey, expected).catch(
      (e: unknown) => e,
    );
    expect(LatchkeyError.is(err, 'DECRYPT_FAILED')).toBe(true);
  });
});
