/**
 * Sender certificates (DESIGN.md "Trust and tokens"; docs/protocol.md "Sender certificate"): the
 * key service vouches that an Ed25519 session key belongs to one participant of one contact.
 * The body is the exact UTF-8 JSON that is signed, with the context 'latchkey.v1.cert'.
 */
import { toBase64Url, utf8Encode } from '@latchkey/crypto/codec';
import { signWithContext } from '@latchkey/crypto/sign';
import {
  CERT_ALG,
  type CertificateBody,
  type Principal,
  type SenderCertificate,
} from '@latchkey/protocol';

/** Signature context of certificates; receivers verify with the same string. */
export const CERT_CONTEXT = 'latchkey.v1.cert';

/**
 * Issues a certificate for `publicKey` (32 bytes) naming the principal's contact, participant,
 * role and the current epoch, valid from `now` until the token expires or `ttlMs` has passed,
 * whichever is first.
 * @throws RangeError when the service secret key is not 32 bytes.
 */
export function issueCertificate(args: {
  serviceSecretKey: Uint8Array;
  principal: Principal;
  publicKey: Uint8Array;
  /** The current epoch (the epoch statement's): the certificate signs envelopes of it only. */
  epoch: number;
  now: number;
  ttlMs: number;
}): SenderCertificate {
  const { principal, now } = args;
  const body: CertificateBody = {
    v: 1,
    alg: CERT_ALG,
    contactId: principal.contactId,
    participantId: principal.participantId,
    role: principal.role,
    publicKey: toBase64Url(args.publicKey),
    issuedAt: now,
    notAfter: Math.min(principal.expiresAt, now + args.ttlMs),
    epoch: args.epoch,
  };
  const bytes = utf8Encode(JSON.stringify(body));
  return {
    body: toBase64Url(bytes),
    sig: toBase64Url(signWithContext(args.serviceSecretKey, CERT_CONTEXT, bytes)),
  };
}
