/**
 * Transcript hashes (docs/threat-model.md "Transcript integrity"): two SHA-256 chains that let the
 * members of a contact catch a relay that replays, reorders, drops, truncates or forks history.
 *
 * - The **sender chain** of one sender session commits to every message it sealed, in order:
 *   `c_0 = 0^32`, `c_k = SHA-256('latchkey.v2.chain' || c_{k-1} || u32(k) || u32(len) msgId
 *   || SHA-256(plaintext))`. Envelope k carries `ctr = k` and `prev = c_{k-1}`.
 * - The **transcript** is what a member has verified of the contact, in seq order:
 *   `h_0 = 0^32`, `h_s = SHA-256('latchkey.v2.transcript' || h_{s-1} || u64(s) || SHA-256(sig_s))`
 *   over every stored envelope (its signature identifies it). A sender puts the last seq it had
 *   verified and the hash there into its next envelope (`seenSeq`, `seenHash`).
 * Both hashes are bound into the envelope's signature and additional data (envelope.ts).
 */
import { assertBytes, assertBytesLength, assertString } from './_assert.ts';
import { lengthPrefixedString, u32, u64 } from './_encoding.ts';
import { concatBytes, utf8Encode } from './codec.ts';
import { sha256 } from './mac.ts';

const CHAIN_DOMAIN = utf8Encode('latchkey.v2.chain');
const TRANSCRIPT_DOMAIN = utf8Encode('latchkey.v2.transcript');
const HASH_LENGTH = 32;

/** The start of every chain and transcript: 32 zero bytes. */
export const ZERO_HASH: Uint8Array = new Uint8Array(HASH_LENGTH);

/**
 * One step of a sender chain.
 * @param prev - The chain value before this message (32 bytes).
 * @param ctr - The message's counter in its session, from 1.
 * @param msgId - The message id.
 * @param plaintext - The sealed plaintext.
 * @returns The chain value after this message.
 * @throws {TypeError|RangeError} on a malformed argument.
 */
export function chainStep(
  prev: Uint8Array,
  ctr: number,
  msgId: string,
  plaintext: Uint8Array,
): Uint8Array {
  assertBytesLength(prev, HASH_LENGTH, 'prev');
  assertString(msgId, 'msgId');
  assertBytes(plaintext, 'plaintext');
  if (ctr === 0) throw new RangeError('ctr must be at least 1');
  return sha256(
    concatBytes(
      CHAIN_DOMAIN,
      prev,
      u32(ctr, 'ctr'),
      lengthPrefixedString(msgId),
      sha256(plaintext),
    ),
  );
}

/**
 * One step of a transcript.
 * @param prev - The transcript hash at `seq - 1` (32 bytes).
 * @param seq - The seq of the envelope, from 1.
 * @param sig - The envelope's 64-byte signature as stored (whether or not it verifies).
 * @returns The transcript hash at `seq`.
 * @throws {TypeError|RangeError} on a malformed argument.
 */
export function transcriptStep(prev: Uint8Array, seq: number, sig: Uint8Array): Uint8Array {
  assertBytesLength(prev, HASH_LENGTH, 'prev');
  assertBytes(sig, 'sig');
  if (seq === 0) throw new RangeError('seq must be at least 1');
  return sha256(concatBytes(TRANSCRIPT_DOMAIN, prev, u64(seq, 'seq'), sha256(sig)));
}
