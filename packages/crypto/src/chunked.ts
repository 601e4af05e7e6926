/**
 * `@latchkey/crypto/chunked`: c2sp.org/chunked-encryption ("Cobblestone-256") for files. One
 * message of up to 2^52 - 1 bytes is encrypted under a 32-byte input key and an application
 * context: HKDF-Expand with SHA-512 derives a key, a base nonce and a 32-byte key commitment from
 * the input key, a random 24-byte salt and the context; the message is split into 16 KiB chunks,
 * the last one always shorter (possibly empty), each sealed with AES-256-GCM (aead.ts) under the
 * base nonce XOR its index. Ciphertext: `salt || commitment || chunk 0 || ... || final chunk`, 56
 * bytes of header and 16 bytes of tag per chunk. The commitment binds key, salt and context (a
 * wrong one fails before any chunk is decrypted); the indices and the short final chunk make
 * reordering, truncation and extension fail.
 *
 * Random access (`ChunkedEncryptor`, `ChunkedDecryptor`, `chunkSpan`), streams (`encryptStream`,
 * `decryptStream`) and one-shot functions compute the same bytes. The parts: _chunked-format.ts
 * (sizes, lengths, derivation), _chunked-cipher.ts (chunks), _chunked-stream.ts (streams).
 */
export {
  AEAD_NAME,
  CHUNK_SIZE,
  ChunkedDecryptError,
  HEADER_SIZE,
  MAX_CONTEXT_SIZE,
  TAG_SIZE,
  chunkSpan,
  chunkedCiphertextLength,
  chunkedPlaintextLength,
  finalChunkIndex,
} from './_chunked-format.ts';
export type { ChunkedDecryptReason } from './_chunked-format.ts';
export { ChunkedDecryptor, ChunkedEncryptor } from './_chunked-cipher.ts';
export { decryptChunked, decryptStream, encryptChunked, encryptStream } from './_chunked-stream.ts';
