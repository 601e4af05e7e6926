/**
 * The slot for the platform's own synchronous primitives (node:crypto, Buffer). Empty in the
 * default entries, which run everywhere; the `node` entries (src/node/, selected by the `node`
 * export condition) fill it by importing _node.ts before anything else. aead.ts, sign.ts, codec.ts,
 * mac.ts and random.ts read it, so that none of them imports node:crypto and a browser bundle
 * never sees it.
 */

/** AES-256-GCM with the contract of aead.ts (arguments already checked). */
export interface NativeAead {
  encrypt(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad?: Uint8Array): Uint8Array;
  /** @throws {AuthenticationError} if the tag does not verify. */
  decrypt(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad?: Uint8Array): Uint8Array;
}

/** Ed25519 signing, and the cofactorless check behind sign.ts's strict pre-check. */
export interface NativeEd25519 {
  sign(secretKey: Uint8Array, message: Uint8Array): Uint8Array;
  verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean;
}

/** Unpadded base64url; `decode` gives `undefined` for any text that is not canonical. */
export interface NativeBase64 {
  encode(bytes: Uint8Array): string;
  decode(text: string): Uint8Array | undefined;
}

/** X25519 with the contract of dh.ts (arguments already checked). */
export interface NativeX25519 {
  publicKey(secret: Uint8Array): Uint8Array;
  /** @throws {RangeError} if the shared secret would be all zeros. */
  sharedSecret(secret: Uint8Array, publicKey: Uint8Array): Uint8Array;
}

/** What the platform provides; all stay undefined outside the `node` entries. */
export const native: {
  aead?: NativeAead;
  ed25519?: NativeEd25519;
  x25519?: NativeX25519;
  base64?: NativeBase64;
  sha256?: (data: Uint8Array) => Uint8Array;
  /** An incremental SHA-256 (hash.ts). */
  sha256Stream?: () => { update(data: Uint8Array): void; digest(): Uint8Array };
  randomBytes?: (n: number) => Uint8Array;
} = {};

/** The backends aead.ts and sign.ts choose from; `'auto'` lets them choose. */
export type Backend = 'node' | 'webcrypto' | 'noble';

/**
 * Checks a backend asked for with `setAeadBackend`/`setEd25519Backend`.
 * @throws {RangeError} if `backend` is not `'node'`, `'webcrypto'`, `'noble'` or `'auto'`.
 * @throws {TypeError} if `'node'` is asked for but `loaded` (the native slot's entry) is absent.
 */
export function checkBackend(backend: string, loaded: object | undefined): void {
  if (!['auto', 'node', 'webcrypto', 'noble'].includes(backend)) {
    throw new RangeError("backend must be 'node', 'webcrypto', 'noble' or 'auto'");
  }
  if (backend === 'node' && loaded === undefined) {
    throw new TypeError('the node:crypto backend is not loaded');
  }
}
