/**
 * The sender session (docs/protocol.md "Envelope", docs/threat-model.md "Transcript integrity"):
 * checks what `send` was given, and seals messages one at a time, in call order, as this session's
 * chain (counter and chain value, see @latchkey/crypto/transcript), each under the epoch of a fresh
 * statement and vouching for everything received so far. Also gives an own message, once stored,
 * the opened form the inbox expects, without a round trip.
 */
import { fromBase64Url, toBase64Url, utf8Decode, utf8Encode } from '@latchkey/crypto/codec';
import { sealEnvelope } from '@latchkey/crypto/envelope';
import { randomBytes } from '@latchkey/crypto/random';
import { ZERO_HASH, chainStep } from '@latchkey/crypto/transcript';
import {
  ENVELOPE_ALG,
  ENVELOPE_VERSION,
  LIMITS,
  LatchkeyError,
  MessageBody,
  MsgId,
  SENDING_ROLES,
  type Role,
  type SealedEnvelope,
} from '@latchkey/protocol';
import type { Identity, KeySession } from './key-session.ts';
import type { Opened } from './open.ts';
import type { QueuedSend } from './send-queue.ts';

/** The plaintext of a text message, exactly as sealed. */
export function textPlaintext(text: string): Uint8Array {
  return utf8Encode(JSON.stringify({ type: 'text', text } satisfies MessageBody));
}

/**
 * Checks one send before anything is sealed and returns its message id and plaintext.
 * @throws LatchkeyError BAD_REQUEST (empty text, malformed `msgId`), CONFLICT (`msgId` already
 *   waiting), FORBIDDEN (the role may not send), TOO_LARGE
 */
export function checkSend(
  role: Role,
  text: string,
  msgId: string | undefined,
  waiting: (msgId: string) => boolean,
): { msgId: string; plaintext: Uint8Array } {
  if (msgId !== undefined && !MsgId.safeParse(msgId).success)
    throw new LatchkeyError('BAD_REQUEST', 'malformed msgId');
  if (msgId !== undefined && waiting(msgId)) {
    throw new LatchkeyError('CONFLICT', 'msgId already waiting in the outbox');
  }
  if (!SENDING_ROLES.has(role)) throw new LatchkeyError('FORBIDDEN', `${role} may not send`);
  if (typeof text !== 'string' || text.length === 0)
    throw new LatchkeyError('BAD_REQUEST', 'empty message');
  const body: MessageBody = { type: 'text', text };
  const plaintext = textPlaintext(text);
  if (plaintext.length > LIMITS.maxPlaintextBytes || !MessageBody.safeParse(body).success) {
    throw new LatchkeyError('TOO_LARGE', 'message too large');
  }
  return { msgId: msgId ?? toBase64Url(randomBytes(16)), plaintext };
}

export interface SenderDeps {
  /** The key session (null until connected). */
  keys(): KeySession | null;
  /** Resolves once everything received so far has been checked. */
  settled(): Promise<void>;
  /** What this member has seen: the last checked seq and the transcript hash there. */
  seen(): { seenSeq: number; seenHash: Uint8Array };
  now(): number;
}

export class Sender {
  readonly #d: SenderDeps;
  /** The sender session's chain (transcript.ts): counter and chain value of the last sealed. */
  #ctr = 0;
  #chain: Uint8Array = ZERO_HASH;
  #sealChain: Promise<void> = Promise.resolve();

  constructor(deps: SenderDeps) {
    this.#d = deps;
  }

  /**
   * Seals one message as the session's next. Sealing is asynchronous: calls are chained so that
   * messages enter the outbox in call order and the session's counter and chain follow that order.
   * @throws LatchkeyError UNAVAILABLE (not connected), KEY_UNAVAILABLE (no fresh statement or key)
   */
  seal(id: Identity, msgId: string, plaintext: Uint8Array): Promise<SealedEnvelope> {
    const sealing = this.#sealChain.then(() => this.#seal(id, msgId, plaintext));
    this.#sealChain = sealing.then(
      () => undefined,
      () => undefined,
    );
    return sealing;
  }

  /** Seals one message under a fresh statement's epoch, as the session's next in its chain. */
  async #seal(id: Identity, msgId: string, plaintext: Uint8Array): Promise<SealedEnvelope> {
    const keys = this.#d.keys();
    if (!keys) throw new LatchkeyError('UNAVAILABLE', 'not connected');
    // What this member vouches for: everything it has received so far, checked (the join replay
    // arrives before `joined`, so it is all queued by now) — and never a newer epoch than the one
    // it seals under, or receivers would rightly call it stale: then it asks again.
    let epoch: number;
    let seen: { seenSeq: number; seenHash: Uint8Array };
    for (let attempt = 0; ; attempt++) {
      await this.#d.settled();
      await keys.ensureFresh();
      epoch = keys.epoch;
      seen = this.#d.seen();
      if (keys.maxEpochSeen <= epoch) break;
      if (attempt >= 2)
        throw new LatchkeyError(
          'KEY_UNAVAILABLE',
          'the key service does not state the newest epoch seen',
        );
    }
    const key = keys.ring.key(epoch);
    const cert = keys.cert;
    if (!key || !cert || keys.certBody?.epoch !== epoch)
      throw new LatchkeyError('KEY_UNAVAILABLE', 'no content key for the current epoch');
    const ctr = this.#ctr + 1;
    const prev = this.#chain;
    const sentAt = this.#d.now();
    const { contactId, participantId: senderId } = id;
    // Object literals, not `{ ...header, more }`: on Node 20's V8 a spread followed by more
    // properties costs ~100x a literal (docs/benchmarks.md "seal+open").
    const sealed = await sealEnvelope({
      key,
      header: {
        v: ENVELOPE_VERSION,
        alg: ENVELOPE_ALG,
        contactId,
        epoch,
        senderId,
        msgId,
        sentAt,
        ctr,
        prev,
        seenSeq: seen.seenSeq,
        seenHash: seen.seenHash,
      },
      plaintext,
      signingKey: keys.signingSecretKey,
    });
    this.#ctr = ctr;
    this.#chain = chainStep(prev, ctr, msgId, plaintext);
    return {
      v: ENVELOPE_VERSION,
      alg: ENVELOPE_ALG,
      contactId,
      epoch,
      senderId,
      msgId,
      sentAt,
      ctr,
      prev: toBase64Url(prev),
      seenSeq: seen.seenSeq,
      seenHash: toBase64Url(seen.seenHash),
      nonce: toBase64Url(sealed.nonce),
      ciphertext: toBase64Url(sealed.ciphertext),
      sig: toBase64Url(sealed.sig),
      cert,
    };
  }
}

/**
 * An own message stored at `seq`, as opened: it joins the ordered stream without a round trip.
 * The session that sealed it is this one, or an earlier one whose outbox was restored (its
 * envelope was opened and verified as ours then). Null when its certificate does not parse.
 */
export function ownOpened(entry: QueuedSend, seq: number, role: Role): Opened | null {
  let cert: { publicKey: string; notAfter: number };
  let body: MessageBody;
  try {
    body = MessageBody.parse(JSON.parse(utf8Decode(entry.plaintext)));
    cert = JSON.parse(utf8Decode(fromBase64Url(entry.envelope.cert.body))) as {
      publicKey: string;
      notAfter: number;
    };
  } catch {
    return null;
  }
  return {
    ok: true,
    env: { ...entry.envelope, seq },
    plaintext: entry.plaintext,
    body,
    text: entry.text,
    role,
    sessionKey: cert.publicKey,
    certNotAfter: cert.notAfter,
  };
}
