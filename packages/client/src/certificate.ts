/**
 * Checks a sender certificate (DESIGN.md "Trust and tokens"): signed by the pinned key-service
 * key, naming the envelope's contact and sender, valid at the envelope's sentAt.
 */
import { fromBase64Url, utf8Decode } from '@latchkey/crypto/codec';
import { verifyWithContext } from '@latchkey/crypto/sign';
import { CertificateBody, LatchkeyError, type SenderCertificate } from '@latchkey/protocol';

export const CERT_CONTEXT = 'latchkey.v1.cert';
/** Clock skew tolerated between a certificate's issuedAt and a message's sentAt. */
const SKEW_MS = 5 * 60 * 1000;

export interface VerifiedSender {
  body: CertificateBody;
  publicKey: Uint8Array;
}

/**
 * Verifies `cert` for a message of `senderId` in `contactId` sent at `sentAt`.
 * @throws LatchkeyError DECRYPT_FAILED when anything does not hold (details stay local).
 */
export function verifyCertificate(
  cert: SenderCertificate,
  serviceKey: Uint8Array,
  expected: { contactId: string; senderId: string; sentAt: number },
): VerifiedSender {
  const fail = (detail: string) => new LatchkeyError('DECRYPT_FAILED', 'sender certificate invalid', { detail });
  let bodyBytes: Uint8Array;
  let sig: Uint8Array;
  try {
    bodyBytes = fromBase64Url(cert.body);
    sig = fromBase64Url(cert.sig);
  } catch {
    throw fail('certificate encoding');
  }
  if (!verifyWithContext(serviceKey, CERT_CONTEXT, bodyBytes, sig)) throw fail('certificate signature');
  let json: unknown;
  try {
    json = JSON.parse(utf8Decode(bodyBytes));
  } catch {
    throw fail('certificate body is not JSON');
  }
  const parsed = CertificateBody.safeParse(json);
  if (!parsed.success) throw fail('certificate body schema');
  const body = parsed.data;
  if (body.contactId !== expected.contactId) throw fail('certificate names another contact');
  if (body.participantId !== expected.senderId) throw fail('certificate names another sender');
  if (body.role === 'supervisor') throw fail('certificate role may not send');
  if (expected.sentAt > body.notAfter || expected.sentAt + SKEW_MS < body.issuedAt) {
    throw fail('message sent outside the certificate validity');
  }
  return { body, publicKey: fromBase64Url(body.publicKey) };
}
