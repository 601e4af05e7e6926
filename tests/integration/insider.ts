/**
 * Test tool for issue 13's attacks: a participant as an attacker holds it (its content key of
 * the current epoch, its own session signing key and the certificate the key service gave it,
 * outside any client), and messages sealed in its name the way a colluding relay would inject
 * them. Shared by the SDK tests (hostile-relay.test.ts) and the Chromium ones (apps/web).
 */
import { KeyReceiver, fetchContactKey } from '@latchkey/client';
import { toBase64Url, utf8Encode } from '@latchkey/crypto/codec';
import { sealEnvelope } from '@latchkey/crypto/envelope';
import { randomBytes } from '@latchkey/crypto/random';
import { generateSigningKeyPair } from '@latchkey/crypto/sign';
import { ZERO_HASH, chainStep } from '@latchkey/crypto/transcript';
import type { Role, SealedEnvelope, SenderCertificate } from '@latchkey/protocol';

export interface Insider {
  key: Uint8Array;
  epoch: number;
  signing: { secretKey: Uint8Array; publicKey: Uint8Array };
  cert: SenderCertificate;
  contactId: string;
  participantId: string;
  ctr: number;
  chain: Uint8Array;
}

/** Where the key service is and how to mint a token for it. */
export interface InsiderStack {
  keysUrl: string;
  token(contactId: string, participantId: string, role: Role, ttlSeconds?: number): Promise<string>;
}

/** Fetches a key and a certificate for `participantId` (an agent) as any member's client would. */
export async function insider(
  stack: InsiderStack,
  contactId: string,
  participantId: string,
  ttlSeconds = 600,
): Promise<Insider> {
  const signing = generateSigningKeyPair();
  const receiver = new KeyReceiver('x25519', participantId);
  const res = await fetchContactKey(
    fetch,
    stack.keysUrl,
    await stack.token(contactId, participantId, 'agent', ttlSeconds),
    { signingKey: toBase64Url(signing.publicKey), delivery: receiver.request()! },
  );
  if (!res.certificate) throw new Error('no certificate');
  return {
    key: receiver.open(res),
    epoch: res.epoch,
    signing,
    cert: res.certificate,
    contactId,
    participantId,
    ctr: 0,
    chain: ZERO_HASH,
  };
}

/** Seals a text message as `who` would, outside any client (what a colluding relay injects). */
export async function forge(who: Insider, text: string, sentAt: number): Promise<SealedEnvelope> {
  who.ctr += 1;
  const header = {
    v: 2 as const,
    alg: 'latchkey.v1.aes256gcm' as const,
    contactId: who.contactId,
    epoch: who.epoch,
    senderId: who.participantId,
    msgId: toBase64Url(randomBytes(16)),
    sentAt,
    ctr: who.ctr,
  };
  const plaintext = utf8Encode(JSON.stringify({ type: 'text', text }));
  const prev = who.chain;
  const sealed = await sealEnvelope({
    key: who.key,
    header: { ...header, prev, seenSeq: 0, seenHash: ZERO_HASH },
    plaintext,
    signingKey: who.signing.secretKey,
  });
  who.chain = chainStep(prev, who.ctr, header.msgId, plaintext);
  return {
    ...header,
    prev: toBase64Url(prev),
    seenSeq: 0,
    seenHash: toBase64Url(ZERO_HASH),
    nonce: toBase64Url(sealed.nonce),
    ciphertext: toBase64Url(sealed.ciphertext),
    sig: toBase64Url(sealed.sig),
    cert: who.cert,
  };
}
