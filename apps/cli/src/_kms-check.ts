/**
 * The vocabulary of `latchkey kms check` (kms-check.ts): its settings, how one check reports
 * (`CheckFailed` and its detail), and the comparisons every group of checks uses.
 */
import { AuthenticationError } from '@latchkey/crypto/aead';
import type { KmClientOptions } from '@latchkey/keys';
import { LatchkeyError } from '@latchkey/protocol';

/** The key manager to check and how to reach it (the `--kms-*` settings of `latchkey start`). */
export interface KmsCheckSettings {
  url: string;
  model: 'wrap' | 'store';
  keyId: string;
  clientId: string;
  secret: Uint8Array;
  timeoutMs?: number;
  tls?: KmClientOptions['tls'];
}

/** Runs one named check: prints `ok NAME` or `FAIL NAME detail`; true when it passed. */
export type Check = (name: string, fn: () => Promise<string | void>) => Promise<boolean>;

/** Why a check failed; its message is the detail printed after `FAIL NAME`. */
export class CheckFailed extends Error {}

/** Fails the check with `detail` unless `cond`. */
export function expect(cond: boolean, detail: string): asserts cond {
  if (!cond) throw new CheckFailed(detail);
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** The detail printed after `FAIL NAME` for `err`. */
export function describe(err: unknown): string {
  if (err instanceof CheckFailed) return err.message;
  if (err instanceof AuthenticationError) return 'DECRYPT_FAILED (422)';
  if (LatchkeyError.is(err))
    return `${err.code} ${err.message}${err.detail === undefined ? '' : ` (${err.detail})`}`;
  return err instanceof Error ? err.message : String(err);
}

/** Expects `p` to fail authentication (422 DECRYPT_FAILED) rather than answer a key. */
export async function expectDecryptFailed(p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (err instanceof AuthenticationError) return;
    throw new CheckFailed(`want 422 DECRYPT_FAILED, got ${describe(err)}`);
  }
  throw new CheckFailed('want 422 DECRYPT_FAILED, got a key');
}
