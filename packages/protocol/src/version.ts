/**
 * Protocol version, algorithm identifiers and size limits shared by relay, key service and
 * clients. Limits sit far below ws's 100 MiB default so that a hostile peer is cut off early.
 */
export const PROTOCOL_VERSION = 1 as const;

/** Envelope algorithm: AES-256-GCM content encryption, Ed25519 sender signature. */
export const ENVELOPE_ALG = 'latchkey.v1.aes256gcm' as const;
/** Envelope format version (2: with the sender chain and transcript fields). */
export const ENVELOPE_VERSION = 2 as const;

export const LIMITS = {
  /** Largest WebSocket frame the relay accepts (bytes, as received). */
  maxFrameBytes: 64 * 1024,
  /** Largest plaintext a client may seal (bytes, UTF-8). */
  maxPlaintextBytes: 32 * 1024,
  /** Largest ciphertext, in base64url characters (32 KiB + 16 tag bytes, encoded, with slack). */
  maxCiphertextChars: 44_000,
  /** Largest HTTP request body the key service reads. */
  maxHttpBodyBytes: 16 * 1024,
  /** Most envelopes returned by one history request. */
  maxHistoryPage: 500,
  /** Seconds a new connection has to send its auth frame. */
  authTimeoutSeconds: 5,
} as const;
