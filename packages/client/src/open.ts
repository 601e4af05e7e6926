/**
 * Opening one stored envelope (docs/protocol.md "Envelope"): the sender's certificate against the
 * pinned key-service key (contact, sender, epoch, validity), the sender's signature, AES-GCM with
 * the additional data, then the body schema. Every failure says only DECRYPT_FAILED (or
 * KEY_UNAVAILABLE when the key could not be had); details never leave this function.
 */
import { fromBase64Url, toBase64Url, utf8Decode } from '@latchkey/crypto/codec';
import { openEnvelope, type EnvelopeHeader as CryptoHeader } from '@latchkey/crypto/envelope';
import {
  LatchkeyError,
  MessageBody,
  type ErrorCode,
  type Role,
  type SealedEnvelope,
  type StoredEnvelope,
} from '@latchkey/protocol';
import { verifyCertificate } from './certificate.ts';
import type { TranscriptInput } from './transcript.ts';

export type Opened =
  | {
      ok: true;
      env: StoredEnvelope;
      plaintext: Uint8Array;
      /** The opened body (text, file or verdict). */
      body: MessageBody;
      /** The text, or a file's caption ('' for none and for verdicts). */
      text: string;
      role: Role;
      /** The certified session key (base64url): one sender session's chain. */
      sessionKey: string;
      certNotAfter: number;
    }
  | { ok: false; env: StoredEnvelope; code: ErrorCode };

/** The header the crypto layer binds, from a wire envelope. @throws on malformed base64url. */
export function cryptoHeader(env: SealedEnvelope): CryptoHeader {
  return headerWith(env, fromBase64Url(env.prev), fromBase64Url(env.seenHash));
}

function headerWith(env: SealedEnvelope, prev: Uint8Array, seenHash: Uint8Array): CryptoHeader {
  return {
    v: env.v,
    alg: env.alg,
    contactId: env.contactId,
    epoch: env.epoch,
    senderId: env.senderId,
    msgId: env.msgId,
    sentAt: env.sentAt,
    ctr: env.ctr,
    prev,
    seenSeq: env.seenSeq,
    seenHash,
  };
}

/** The binary fields the transcript checks read, decoded once while opening (never mutated). */
interface Decoded {
  sig: Uint8Array;
  prev: Uint8Array;
  seenHash: Uint8Array;
}
const decodedOf = new WeakMap<StoredEnvelope, Decoded>();

/** The session key (base64url) of each checked certificate body, encoded once. */
const sessionKeyOf = new WeakMap<object, string>();

function sessionKey(body: object, publicKey: Uint8Array): string {
  let key = sessionKeyOf.get(body);
  if (key === undefined) sessionKeyOf.set(body, (key = toBase64Url(publicKey)));
  return key;
}

/** Opens `env`; never throws for bad content. */
export async function openStored(
  env: StoredEnvelope,
  deps: {
    contactId: string;
    serviceKey: Uint8Array | null;
    keyFor: (epoch: number) => Promise<Uint8Array>;
  },
): Promise<Opened> {
  const failed = (code: ErrorCode): Opened => ({ ok: false, env, code });
  if (env.contactId !== deps.contactId || !deps.serviceKey) return failed('DECRYPT_FAILED');
  let key: Uint8Array;
  try {
    key = await deps.keyFor(env.epoch);
  } catch (err) {
    return failed(LatchkeyError.is(err, 'NOT_FOUND') ? 'DECRYPT_FAILED' : 'KEY_UNAVAILABLE');
  }
  try {
    const sender = await verifyCertificate(env.cert, deps.serviceKey, env);
    const decoded: Decoded = {
      sig: fromBase64Url(env.sig),
      prev: fromBase64Url(env.prev),
      seenHash: fromBase64Url(env.seenHash),
    };
    decodedOf.set(env, decoded);
    const plaintext = await openEnvelope({
      key,
      header: headerWith(env, decoded.prev, decoded.seenHash),
      nonce: fromBase64Url(env.nonce),
      ciphertext: fromBase64Url(env.ciphertext),
      sig: decoded.sig,
      verifyKey: sender.publicKey,
    });
    const body = MessageBody.safeParse(JSON.parse(utf8Decode(plaintext)));
    if (!body.success) return failed('DECRYPT_FAILED');
    return {
      ok: true,
      env,
      plaintext,
      body: body.data,
      text: bodyText(body.data),
      role: sender.body.role,
      // The certificate cache hands out one body object per certificate: encoded once.
      sessionKey: sessionKey(sender.body, sender.publicKey),
      certNotAfter: sender.body.notAfter,
    };
  } catch {
    // Bad certificate, signature, tag, UTF-8 or body: all say only that it failed.
    return failed('DECRYPT_FAILED');
  }
}

/** What the transcript checks see of an opened (or failed) envelope, made once per envelope. */
const inputOf = new WeakMap<Opened, TranscriptInput>();

/** What the transcript checks see of an opened (or failed) envelope. */
export function transcriptInput(o: Opened, live: boolean): TranscriptInput {
  const made = inputOf.get(o);
  if (made !== undefined && made.live === live) return made;
  const env = o.env;
  let decoded = decodedOf.get(env);
  if (decoded === undefined) {
    try {
      decoded = {
        sig: fromBase64Url(env.sig),
        prev: fromBase64Url(env.prev),
        seenHash: fromBase64Url(env.seenHash),
      };
    } catch {
      // The schema checked the lengths; a decoding failure cannot happen, but never throws here.
      decoded = { sig: new Uint8Array(64), prev: new Uint8Array(32), seenHash: new Uint8Array(32) };
    }
  }
  const input: TranscriptInput = {
    seq: env.seq,
    senderId: env.senderId,
    msgId: env.msgId,
    epoch: env.epoch,
    sentAt: env.sentAt,
    ctr: env.ctr,
    prev: decoded.prev,
    seenSeq: env.seenSeq,
    seenHash: decoded.seenHash,
    sig: decoded.sig,
    live,
    ...(o.ok
      ? {
          opened: {
            plaintext: o.plaintext,
            sessionKey: o.sessionKey,
            certNotAfter: o.certNotAfter,
          },
        }
      : {}),
  };
  inputOf.set(o, input);
  return input;
}

/** The text of a body: a text, a file's caption, '' for a file without one and for a verdict. */
export function bodyText(body: MessageBody): string {
  return body.type === 'verdict' ? '' : (body.text ?? '');
}
