/**
 * The one error @latchkey/crypto raises for data that fails authentication. Its message is fixed
 * so that nothing about why it failed (tag, signature, length) can leak to a peer; callers map it
 * to the protocol's `DECRYPT_FAILED` code.
 */

/** Thrown when a ciphertext, tag or signature does not authenticate. Message: 'authentication failed'. */
export class AuthenticationError extends Error {
  constructor() {
    super('authentication failed');
    this.name = 'AuthenticationError';
  }
}
