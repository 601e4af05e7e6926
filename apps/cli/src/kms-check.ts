/**
 * `latchkey kms check`: a conformance suite an enterprise runs against its own key manager
 * (docs/key-manager-api.yaml, docs/key-management.md). It makes the calls the key service
 * makes, in its order and with its `reason`s, through the real HTTP adapters of @latchkey/keys,
 * then the error cases (unknown key or contact, bad signature, unknown client, tampered body or
 * path, replayed nonce, stale or future timestamp, malformed body) with requests signed by the
 * adapters' own `signKmRequest`. Prints `ok NAME` or `FAIL NAME detail` per check, then
 * `N passed, N failed`; exit 0 only when every check passed.
 *
 * It creates contacts named `kms-check-<random>` at the key manager (the store model destroys
 * them at the end); point it at a test instance or accept those entries in the audit.
 */
import { parseArgs } from 'node:util';
import { toBase64Url } from '@latchkey/crypto/codec';
import { randomBytes } from '@latchkey/crypto/random';
import type { KmClientOptions } from '@latchkey/keys';
import { describe, type Check, type KmsCheckSettings } from './_kms-check.ts';
import { authChecks } from './kms-check-auth.ts';
import { Raw } from './kms-check-raw.ts';
import { storeChecks } from './kms-check-store.ts';
import { wrapChecks } from './kms-check-wrap.ts';
import { KEY_START_OPTIONS, keyServiceSettings, type KeyStartFlags } from './key-settings.ts';
import { EXIT, UsageError } from './usage.ts';

export type { KmsCheckSettings } from './_kms-check.ts';

type Out = (line: string) => void;
type Env = Readonly<Record<string, string | undefined>>;

/** The `--kms-*` flags of `latchkey start`, which `kms check` takes too (same environment). */
export const KMS_CHECK_OPTIONS = Object.fromEntries(
  Object.entries(KEY_START_OPTIONS).filter(([name]) => name.startsWith('kms-')),
) as {
  [
    K in keyof typeof KEY_START_OPTIONS as K extends `kms-${string}` ? K : never
  ]: (typeof KEY_START_OPTIONS)[K];
};

/**
 * Runs every check against the key manager of `s`, printing one line per check and the totals.
 * @returns EXIT.ok when all passed, else EXIT.error.
 */
export async function runKmsCheck(s: KmsCheckSettings, out: Out): Promise<number> {
  let passed = 0;
  let failed = 0;
  const check: Check = async (name, fn) => {
    try {
      const note = await fn();
      out(note === undefined || note === '' ? `ok ${name}` : `ok ${name} (${note})`);
      passed++;
      return true;
    } catch (err) {
      out(`FAIL ${name} ${describe(err).replace(/\s+/g, ' ')}`);
      failed++;
      return false;
    }
  };
  const client: KmClientOptions = {
    url: s.url,
    auth: { type: 'hmac', clientId: s.clientId, secret: s.secret },
    // One attempt per call and no circuit: each check sees the key manager's own answer.
    retries: 0,
    breakerThreshold: 1_000_000,
    ...(s.timeoutMs === undefined ? {} : { timeoutMs: s.timeoutMs }),
    ...(s.tls === undefined ? {} : { tls: s.tls }),
  };
  const raw = new Raw(s);
  const run = `kms-check-${toBase64Url(randomBytes(6)).replace(/[^A-Za-z0-9]/g, 'x')}`;
  if (s.model === 'wrap') await wrapChecks(s, client, raw, run, check);
  else await storeChecks(client, raw, run, check);
  await authChecks(s, raw, run, check);
  out(`${passed} passed, ${failed} failed`);
  return failed === 0 ? EXIT.ok : EXIT.error;
}

/**
 * `latchkey kms check [--kms-url URL] [--kms-model wrap|store] [--kms-key-id ID]
 * [--kms-client-id ID] [--kms-secret-file FILE] [--kms-timeout 2s]`, each flag else its
 * `LATCHKEY_KMS_*` variable as for `latchkey start --key-manager http`; the secret from
 * `LATCHKEY_KMS_SECRET` or the file.
 * @throws UsageError for a missing or malformed setting.
 */
export async function kms(
  argv: readonly string[],
  out: Out,
  env: Env = process.env,
): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'check') throw new UsageError('kms takes check');
  let values: KeyStartFlags;
  try {
    ({ values } = parseArgs({
      args: [...rest],
      options: KMS_CHECK_OPTIONS,
      allowPositionals: false,
      strict: true,
    }));
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  const { keyManager } = keyServiceSettings({ ...values, 'key-manager': 'http' }, env);
  if (keyManager.kind !== 'http') throw new UsageError('kms check needs an http key manager');
  return runKmsCheck(
    {
      url: keyManager.url,
      model: keyManager.model ?? 'wrap',
      keyId: keyManager.keyId ?? 'latchkey-kek',
      clientId: keyManager.clientId ?? 'latchkey',
      secret: keyManager.secret,
      ...(keyManager.timeoutMs === undefined ? {} : { timeoutMs: keyManager.timeoutMs }),
      ...(keyManager.tls === undefined ? {} : { tls: keyManager.tls }),
    },
    out,
  );
}
