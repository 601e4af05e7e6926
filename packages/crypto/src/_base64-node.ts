/**
 * base64url (RFC 4648 §5, unpadded) on node's Buffer codec, for codec.ts under the `node` export
 * condition: native code, several times faster than the portable loop on message-sized input.
 * Node's decoder is lenient (it skips foreign characters, accepts padding), so a decoding counts
 * only if encoding its bytes gives back the very text: exactly the canonical texts codec.ts
 * accepts. Anything else is left to codec.ts, which refuses it with its precise error.
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
  const decoded = Buffer.from(text, 'base64url');
  return decoded.toString('base64url') === text ? ownBytes(decoded) : undefined;
}
