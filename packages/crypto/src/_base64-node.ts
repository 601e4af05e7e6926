/**
 * base64url (RFC 4648 §5, unpadded) on node's Buffer codec, for codec.ts under the `node` export
 * condition: native code, several times faster than the portable loop on message-sized input.
 * Node's decoder is lenient (it takes the standard alphabet's `+` and `/` too, skips foreign
 * characters, stops at padding, reads only the low byte of each UTF-16 unit and ignores trailing
 * bits), so a decoding counts only for a text made of ASCII other than `+` and `/` that gave every
 * byte its length calls for, and whose last partial group encodes back to the very same characters:
 * exactly the canonical texts codec.ts accepts. Anything else is left to codec.ts, which refuses
 * it with its precise error. (Checked without encoding the whole text again: a message's
 * ciphertext is kilobytes.)
 */
import { ownBytes } from './_buffer-node.ts';

/**
 * V8 keeps typed arrays of up to 64 bytes inside its heap; asking one for its `.buffer` moves it
 * out, which costs more than copying its few bytes. Larger ones are viewed in place.
 */
const ON_HEAP_MAX = 64;

/** The unpadded base64url text of `bytes`. */
export function nodeToBase64Url(bytes: Uint8Array): string {
  const buf =
    bytes.length <= ON_HEAP_MAX
      ? Buffer.from(bytes)
      : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  return buf.toString('base64url');
}

/** The bytes of canonical unpadded base64url `text`, in their own array; else `undefined`. */
export function nodeFromBase64Url(text: string): Uint8Array | undefined {
  const tail = text.length % 4;
  if (
    tail === 1 ||
    Buffer.byteLength(text, 'utf8') !== text.length || // not all ASCII
    text.includes('+') ||
    text.includes('/')
  ) {
    return undefined;
  }
  const decoded = Buffer.from(text, 'base64url');
  // Fewer bytes than the length calls for: a character was skipped, or decoding stopped at '='.
  if (decoded.length !== ((text.length - tail) / 4) * 3 + (tail === 0 ? 0 : tail - 1)) {
    return undefined;
  }
  // The trailing bits of a last partial group are zero iff it encodes back to itself.
  if (
    tail !== 0 &&
    decoded.toString('base64url', decoded.length - tail + 1) !== text.slice(-tail)
  ) {
    return undefined;
  }
  return ownBytes(decoded);
}
