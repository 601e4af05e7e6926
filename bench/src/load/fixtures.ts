/**
 * Realistic participants and envelopes for the load generator and the crypto benchmark: a
 * key-service Ed25519 key that certifies each participant's session key (as apps/keyd does,
 * docs/protocol.md "Sender certificate"), a content key per contact, and envelopes sealed with
 * @latchkey/crypto/envelope and opened the way @latchkey/client opens them (certificate check,
 * signature check, AES-GCM, body schema).
 */
import { fromBase64Url, toBase64Url, utf8Decode, utf8Encode } from '@latchkey/crypto/codec';
import { openEnvelope, sealEnvelope } from '@latchkey/crypto/envelope';
import { randomBytes } from '@latchkey/crypto/random';
import { generateSigningKeyPair, signWithContext } from '@latchkey/crypto/sign';
import { ZERO_HASH, chainStep } from '@latchkey/crypto/transcript';
import { cryptoHeader, verifyCertificate } from '@latchkey/client';
import {
  CERT_ALG,
  MessageBody,
  type CertificateBody,
  type Role,
  type SealedEnvelope,
  type SenderCertificate,
  type StoredEnvelope,
} from '@latchkey/protocol';

const CERT_CONTEXT = 'latchkey.v1.cert';

export interface ServiceKey {
  secretKey: Uint8Array;
  publicKey: Uint8Array;
}

export interface Participant {
  contactId: string;
  participantId: string;
  role: Role;
  signingKey: Uint8Array;
  cert: SenderCertificate;
  /** The session's chain (as the client keeps it): last counter and chain value. */
  ctr: number;
  chain: Uint8Array;
}

export function makeServiceKey(): ServiceKey {
  return generateSigningKeyPair();
}

/** A participant with a fresh session key, certified by `service` for an hour. */
export function makeParticipant(
  service: ServiceKey,
  contactId: string,
  participantId: string,
  role: Role,
): Participant {
  const pair = generateSigningKeyPair();
  const now = Date.now();
  const body: CertificateBody = {
    v: 1,
    alg: CERT_ALG,
    contactId,
    participantId,
    role,
    publicKey: toBase64Url(pair.publicKey),
    issuedAt: now,
    notAfter: now + 3_600_000,
    epoch: 0,
  };
  const bytes = utf8Encode(JSON.stringify(body));
  const cert = {
    body: toBase64Url(bytes),
    sig: toBase64Url(signWithContext(service.secretKey, CERT_CONTEXT, bytes)),
  };
  return {
    contactId,
    participantId,
    role,
    signingKey: pair.secretKey,
    cert,
    ctr: 0,
    chain: ZERO_HASH,
  };
}

/** A message text of exactly `size` UTF-8 bytes (mixed words, like chat). */
export function messageText(size: number): string {
  const words =
    'thanks order parcel refund tracking number delivered yesterday please check hello sure ';
  let s = '';
  while (s.length < size) s += words;
  return s.slice(0, size);
}

/** Seals `text` as the client SDK does: `{"type":"text","text"}` JSON, random nonce, signed. */
export async function sealText(
  p: Participant,
  key: Uint8Array,
  text: string,
  msgId: string = toBase64Url(randomBytes(16)),
): Promise<SealedEnvelope> {
  const v = 2 as const;
  const alg = 'latchkey.v1.aes256gcm' as const;
  const { contactId, participantId: senderId } = p;
  const sentAt = Date.now();
  const ctr = p.ctr + 1;
  const plaintext = utf8Encode(JSON.stringify({ type: 'text', text } satisfies MessageBody));
  const prev = p.chain;
  // Object literals as the client's sender.ts writes them (a spread plus properties is slow on
  // Node 20's V8 and would be measured as crypto).
  const sealed = await sealEnvelope({
    key,
    header: {
      v,
      alg,
      contactId,
      epoch: 0,
      senderId,
      msgId,
      sentAt,
      ctr,
      prev,
      seenSeq: 0,
      seenHash: ZERO_HASH,
    },
    plaintext,
    signingKey: p.signingKey,
  });
  p.ctr = ctr;
  p.chain = chainStep(prev, ctr, msgId, plaintext);
  return {
    v,
    alg,
    contactId,
    epoch: 0,
    senderId,
    msgId,
    sentAt,
    ctr,
    prev: toBase64Url(prev),
    seenSeq: 0,
    seenHash: toBase64Url(ZERO_HASH),
    nonce: toBase64Url(sealed.nonce),
    ciphertext: toBase64Url(sealed.ciphertext),
    sig: toBase64Url(sealed.sig),
    cert: p.cert,
  };
}

/**
 * Opens an envelope as @latchkey/client does: certificate against the pinned service key,
 * sender signature, AES-GCM, body schema. @throws when any check fails.
 */
export async function openText(
  env: SealedEnvelope | StoredEnvelope,
  key: Uint8Array,
  servicePublicKey: Uint8Array,
): Promise<string> {
  const sender = await verifyCertificate(env.cert, servicePublicKey, env);
  const plaintext = await openEnvelope({
    key,
    header: cryptoHeader(env),
    nonce: fromBase64Url(env.nonce),
    ciphertext: fromBase64Url(env.ciphertext),
    sig: fromBase64Url(env.sig),
    verifyKey: sender.publicKey,
  });
  const body = MessageBody.parse(JSON.parse(utf8Decode(plaintext)));
  if (body.type !== 'text') throw new Error('not a text message');
  return body.text;
}
