/**
 * Checks a sender certificate (DESIGN.md "Trust and tokens"): signed by the pinned key-service
 * key, naming the envelope's contact, sender and epoch, valid at the envelope's sentAt. (The
 * receiver's own clock bounds live messages further: transcript.ts.)
 *
 * A sender uses one certificate for a whole session, so the signature check (the expensive
 * part) is cached per certificate and service key; the cheap checks run for every message.
 */
import { fromBase64Url, utf8Decode } from '@latchkey/crypto/codec';
import { verifyWithContextAsync } from '@latchkey/crypto/sign';
import {
  CertificateBody,
  FRESHNESS,
  LatchkeyError,
  type SenderCertificate,
} from '@latchkey/protocol';

export const CERT_CONTEXT = 'latchkey.v1.cert';
/** Clock skew tolerated between a certificate's issuedAt and a message's sentAt. */
const SKEW_MS = FRESHNESS.clockSkewMs;
/** Certificates whose signature checked out, per service key (bounded, oldest dropped first). */
const MAX_CACHED = 1024;
/**
 * A checked certificate: its body text (the cache is keyed by the signature text alone, so that no
 * key is built per message; a hit needs the very same body), the parsed body and its session key.
 */
interface Checked {
  text: string;
  body: CertificateBody;
  publicKey: Uint8Array;
}
const verified = new WeakMap<Uint8Array, Map<string, Checked>>();

export interface VerifiedSender {
  body: CertificateBody;
  publicKey: Uint8Array;
}

const fail = (detail: string): LatchkeyError =>
  new LatchkeyError('DECRYPT_FAILED', 'sender certificate invalid', { detail });

/**
 * The certificate's body once its signature by `serviceKey` is checked (cached).
 * @throws LatchkeyError DECRYPT_FAILED when the signature or the body does not hold.
 */
export async function signedBody(
  cert: SenderCertificate,
  serviceKey: Uint8Array,
): Promise<CertificateBody> {
  return (await checked(cert, serviceKey)).body;
}

/** The checked certificate, from the cache or checked now. @throws as {@link signedBody}. */
async function checked(cert: SenderCertificate, serviceKey: Uint8Array): Promise<Checked> {
  let cache = verified.get(serviceKey);
  if (!cache) {
    cache = new Map();
    verified.set(serviceKey, cache);
  }
  const hit = cache.get(cert.sig);
  if (hit !== undefined && hit.text === cert.body) return hit;
  let bodyBytes: Uint8Array;
  let sig: Uint8Array;
  try {
    bodyBytes = fromBase64Url(cert.body);
    sig = fromBase64Url(cert.sig);
  } catch {
    throw fail('certificate encoding');
  }
  if (!(await verifyWithContextAsync(serviceKey, CERT_CONTEXT, bodyBytes, sig)))
    throw fail('certificate signature');
  let json: unknown;
  try {
    json = JSON.parse(utf8Decode(bodyBytes));
  } catch {
    throw fail('certificate body is not JSON');
  }
  const parsed = CertificateBody.safeParse(json);
  if (!parsed.success) throw fail('certificate body schema');
  let publicKey: Uint8Array;
  try {
    publicKey = fromBase64Url(parsed.data.publicKey);
  } catch {
    throw fail('certificate key encoding');
  }
  const entry: Checked = { text: cert.body, body: parsed.data, publicKey };
  if (cache.size >= MAX_CACHED) cache.delete(cache.keys().next().value as string);
  cache.set(cert.sig, entry);
  return entry;
}

/**
 * Verifies `cert` for a message of `senderId` in `contactId` under `epoch`, sent at `sentAt`.
 * @throws LatchkeyError DECRYPT_FAILED when anything does not hold (details stay local).
 */
export async function verifyCertificate(
  cert: SenderCertificate,
  serviceKey: Uint8Array,
  expected: { contactId: string; senderId: string; sentAt: number; epoch: number },
): Promise<VerifiedSender> {
  const { body, publicKey } = await checked(cert, serviceKey);
  if (body.contactId !== expected.contactId) throw fail('certificate names another contact');
  if (body.participantId !== expected.senderId) throw fail('certificate names another sender');
  if (body.epoch !== expected.epoch) throw fail('certificate issued for another epoch');
  if (body.role === 'supervisor') throw fail('certificate role may not send');
  if (expected.sentAt > body.notAfter || expected.sentAt + SKEW_MS < body.issuedAt) {
    throw fail('message sent outside the certificate validity');
  }
  // A copy: the cached key must not change under a caller that writes to what it gets.
  return { body, publicKey: new Uint8Array(publicKey) };
}
