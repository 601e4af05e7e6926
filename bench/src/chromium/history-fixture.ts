/**
 * The history the Chromium benchmark opens (docs/benchmarks.md "Chromium history"): one contact's
 * stored envelopes, sealed for real in Node as @latchkey/client seals them (certificates from a
 * bench key-service key, as load/fixtures.ts makes them; per-session chains; each sender's
 * `seenSeq`/`seenHash` naming the transcript it had verified, docs/protocol.md "Transcript"),
 * plus the signed epoch statement and keys the page's stand-in key service hands out.
 */
import { toBase64Url, utf8Encode } from '@latchkey/crypto/codec';
import { sealEnvelope } from '@latchkey/crypto/envelope';
import { randomBytes } from '@latchkey/crypto/random';
import { signWithContext } from '@latchkey/crypto/sign';
import { ZERO_HASH, chainStep, transcriptStep } from '@latchkey/crypto/transcript';
import {
  STATEMENT_ALG,
  STATEMENT_CONTEXT,
  type EpochStatement,
  type EpochStatementBody,
  type Role,
  type StoredEnvelope,
} from '@latchkey/protocol';
import type { ChatMessage } from '@latchkey/client';
import {
  makeParticipant,
  makeServiceKey,
  messageText,
  type Participant,
} from '../load/fixtures.ts';

/** Everything the page needs, as plain JSON (handed over with `page.evaluate`). */
export interface HistoryPayload {
  contactId: string;
  /** The reading participant (an agent reopening the conversation; some messages are its own). */
  reader: { participantId: string; role: Role };
  /** The reader's token (unsigned: the stand-ins check nothing, the client only reads claims). */
  token: string;
  /** The key service's Ed25519 keys (base64url): the page signs the reader's certificate. */
  serviceSecretKey: string;
  servicePublicKey: string;
  /** The content key of epoch 0 (base64url). */
  contentKey: string;
  statement: EpochStatement;
  /** The stored envelopes in seq order, each as the relay serialises it. */
  envelopes: string[];
  /** The same messages as the client emits them once opened (for the render-only run). */
  opened: ChatMessage[];
}

/** Who sends, in turn: a visitor (two sessions: it reloaded halfway), and two agents. */
const TURNS = ['visitor', 'visitor', 'agent-1', 'visitor', 'agent-2', 'agent-1'] as const;

/** A token naming the reader (the client reads its claims unverified; no service checks it). */
function readerToken(contactId: string, participantId: string, role: Role): string {
  const part = (o: object): string => toBase64Url(utf8Encode(JSON.stringify(o)));
  const sig = toBase64Url(randomBytes(32));
  return `${part({ alg: 'EdDSA', typ: 'JWT' })}.${part({ sub: participantId, cid: contactId, role })}.${sig}`;
}

/** Seals `count` messages of `size` bytes of text into one contact's history. */
export async function makeHistory(count: number, size: number): Promise<HistoryPayload> {
  const service = makeServiceKey();
  const contactId = 'bench-history';
  const key = randomBytes(32);
  const now = Date.now();
  const visitor1 = makeParticipant(service, contactId, 'visitor-1', 'visitor');
  const visitor2 = makeParticipant(service, contactId, 'visitor-1', 'visitor');
  const agent1 = makeParticipant(service, contactId, 'agent-1', 'agent');
  const agent2 = makeParticipant(service, contactId, 'agent-2', 'agent');
  const text = messageText(size);
  const envelopes: string[] = [];
  const opened: ChatMessage[] = [];
  let transcript = ZERO_HASH;
  for (let seq = 1; seq <= count; seq++) {
    const turn = TURNS[seq % TURNS.length]!;
    const p: Participant =
      turn === 'agent-1'
        ? agent1
        : turn === 'agent-2'
          ? agent2
          : seq <= count / 2
            ? visitor1
            : visitor2;
    const msgId = toBase64Url(randomBytes(16));
    // 200 B, unique per message (the counter up front), like chat text.
    const body = `${seq} ${text}`.slice(0, size);
    const plaintext = utf8Encode(JSON.stringify({ type: 'text', text: body }));
    const header = {
      v: 2 as const,
      alg: 'latchkey.v1.aes256gcm' as const,
      contactId,
      epoch: 0,
      senderId: p.participantId,
      msgId,
      sentAt: now - (count - seq) * 10,
      ctr: p.ctr + 1,
    };
    // What this sender had verified: everything before it.
    const seenSeq = seq - 1;
    const sealed = await sealEnvelope({
      key,
      header: { ...header, prev: p.chain, seenSeq, seenHash: transcript },
      plaintext,
      signingKey: p.signingKey,
    });
    const env: StoredEnvelope = {
      ...header,
      prev: toBase64Url(p.chain),
      seenSeq,
      seenHash: toBase64Url(transcript),
      nonce: toBase64Url(sealed.nonce),
      ciphertext: toBase64Url(sealed.ciphertext),
      sig: toBase64Url(sealed.sig),
      cert: p.cert,
      seq,
    };
    p.chain = chainStep(p.chain, header.ctr, msgId, plaintext);
    p.ctr = header.ctr;
    transcript = transcriptStep(transcript, seq, sealed.sig);
    envelopes.push(JSON.stringify(env));
    opened.push({
      seq,
      msgId,
      senderId: p.participantId,
      senderRole: p.role,
      sentAt: header.sentAt,
      epoch: 0,
      text: body,
      own: p.participantId === 'agent-1',
    });
  }
  const statementBody: EpochStatementBody = {
    v: 1,
    alg: STATEMENT_ALG,
    contactId,
    epoch: 0,
    epochs: [{ epoch: 0, since: now - count * 10 - 60_000 }],
    members: [
      { participantId: 'visitor-1', role: 'visitor' },
      { participantId: 'agent-1', role: 'agent' },
      { participantId: 'agent-2', role: 'agent' },
    ],
    removed: [],
    issuedAt: now,
  };
  const statementBytes = utf8Encode(JSON.stringify(statementBody));
  return {
    contactId,
    reader: { participantId: 'agent-1', role: 'agent' },
    token: readerToken(contactId, 'agent-1', 'agent'),
    serviceSecretKey: toBase64Url(service.secretKey),
    servicePublicKey: toBase64Url(service.publicKey),
    contentKey: toBase64Url(key),
    statement: {
      body: toBase64Url(statementBytes),
      sig: toBase64Url(signWithContext(service.secretKey, STATEMENT_CONTEXT, statementBytes)),
    },
    envelopes,
    opened,
  };
}
