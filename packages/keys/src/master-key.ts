/**
 * The master key from which the internal key manager derives its key-encryption key
 * (DESIGN.md "Key hierarchy": master KEK -> wraps each contact's content key). It comes from
 * the environment (`LATCHKEY_MASTER_KEY`, for deployments with a secret store) or else from a
 * private file created on first start (the development default).
 */
import { decodeSecretText, loadOrCreateSecret } from './secret-file.ts';

export const MASTER_KEY_ENV = 'LATCHKEY_MASTER_KEY';
export const MASTER_KEY_BYTES = 32;

export interface ResolvedMasterKey {
  key: Uint8Array;
  source: 'env' | 'file';
  /** The file it was read from or written to (source `file` only). */
  path?: string;
  /** True when the file was just created with a fresh random key. */
  created: boolean;
}

/**
 * Finds the master key: `env.LATCHKEY_MASTER_KEY` when set and not empty (32 bytes as
 * base64url or 64 hex characters), otherwise the file `file`, created with 32 random bytes
 * (mode 0600, parent directory 0700) when missing.
 * @throws LatchkeyError KEY_UNAVAILABLE with a message saying what is wrong (never the value):
 *   a malformed environment value, a file readable by group or others, a file of the wrong
 *   size, or an I/O failure.
 */
export function resolveMasterKey(opts: {
  env: Readonly<Record<string, string | undefined>>;
  file: string;
}): ResolvedMasterKey {
  const text = opts.env[MASTER_KEY_ENV];
  if (text !== undefined && text.trim() !== '') {
    const key = decodeSecretText(text, MASTER_KEY_ENV, { exactBytes: MASTER_KEY_BYTES });
    return { key, source: 'env', created: false };
  }
  const { secret, created } = loadOrCreateSecret(opts.file, MASTER_KEY_BYTES);
  return { key: secret, source: 'file', path: opts.file, created };
}
