/**
 * From node's Buffers to the plain Uint8Arrays the API returns, copying only when needed: a Buffer
 * that is a slice of node's shared allocation pool (small ones are) is copied out, so that no
 * caller's `.buffer` reaches other data; one that owns its whole ArrayBuffer is wrapped as it is.
 */

/** `buf`'s bytes as a Uint8Array whose ArrayBuffer holds exactly them. */
export function ownBytes(buf: Buffer): Uint8Array {
  return buf.byteOffset === 0 && buf.buffer.byteLength === buf.length
    ? new Uint8Array(buf.buffer, 0, buf.length)
    : new Uint8Array(buf);
}
