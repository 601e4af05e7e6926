/**
 * The key-service settings of `latchkey start` (also read by `latchkey kms check`): the flags
 * and environment variables that choose the key manager (internal, http, pkcs11, kmip), its
 * connection and credentials, rotation, and the shred-completion schedule
 * (docs/key-management.md). Secrets (KMS HMAC secret, HSM PIN) come from the environment or
 * files only, never from flags.
 */
import { readFileSync } from 'node:fs';
import type { KeyManagerChoice } from '@latchkey/keyd';
import { decodeSecretText } from '@latchkey/keys';
import { SYSLOG_START_OPTIONS, syslogSettings, type SyslogStartFlags } from './syslog-settings.ts';
import { UsageError } from './usage.ts';

type Env = Readonly<Record<string, string | undefined>>;

const str = { type: 'string' } as const;

/** parseArgs options that `latchkey start` takes for the key service. */
export const KEY_START_OPTIONS = {
  'key-manager': str,
  'kms-url': str,
  'kms-model': str,
  'kms-key-id': str,
  'kms-client-id': str,
  'kms-secret-file': str,
  'kms-timeout': str,
  'kms-cache-ttl': str,
  'kms-generate': { type: 'boolean' },
  'pkcs11-module': str,
  'pkcs11-token': str,
  'pkcs11-key-label': str,
  'pkcs11-pin-file': str,
  'pkcs11-create-key': { type: 'boolean' },
  'kmip-host': str,
  'kmip-port': str,
  'kmip-ca': str,
  'kmip-client-cert': str,
  'kmip-client-key': str,
  'kmip-servername': str,
  'kmip-key-name': str,
  'kmip-timeout': str,
  'kmip-create-key': { type: 'boolean' },
  'kmip-no-extractable-attribute': { type: 'boolean' },
  'rotate-after': str,
  'rotate-after-messages': str,
  'shred-complete-every': str,
  ...SYSLOG_START_OPTIONS,
} as const;

export interface KeyStartFlags extends SyslogStartFlags {
  'key-manager'?: string | undefined;
  'kms-url'?: string | undefined;
  'kms-model'?: string | undefined;
  'kms-key-id'?: string | undefined;
  'kms-client-id'?: string | undefined;
  'kms-secret-file'?: string | undefined;
  'kms-timeout'?: string | undefined;
  'kms-cache-ttl'?: string | undefined;
  'kms-generate'?: boolean | undefined;
  'pkcs11-module'?: string | undefined;
  'pkcs11-token'?: string | undefined;
  'pkcs11-key-label'?: string | undefined;
  'pkcs11-pin-file'?: string | undefined;
  'pkcs11-create-key'?: boolean | undefined;
  'kmip-host'?: string | undefined;
  'kmip-port'?: string | undefined;
  /** Files (PEM): the server's CA, the client certificate and the client key. */
  'kmip-ca'?: string | undefined;
  'kmip-client-cert'?: string | undefined;
  'kmip-client-key'?: string | undefined;
  'kmip-servername'?: string | undefined;
  'kmip-key-name'?: string | undefined;
  'kmip-timeout'?: string | undefined;
  'kmip-create-key'?: boolean | undefined;
  'kmip-no-extractable-attribute'?: boolean | undefined;
  'rotate-after'?: string | undefined;
  'rotate-after-messages'?: string | undefined;
  'shred-complete-every'?: string | undefined;
}

/** A duration: 500ms, 90, 90s, 30m, 1h, 1d (bare numbers are seconds) in ms. */
export function parseDurationMs(text: string, flag: string): number {
  const m = /^(\d{1,9})(ms|s|m|h|d)?$/.exec(text.trim());
  if (!m) throw new UsageError(`${flag} must look like 500ms, 90s, 30m, 1h or 1d`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[
    (m[2] ?? 's') as 'ms' | 's' | 'm' | 'h' | 'd'
  ];
  return Number(m[1]) * unit;
}

/**
 * A shared secret from the environment variable `name`, else from `file`.
 * @throws UsageError when neither is set, the file cannot be read, or the secret is too short
 *   or not base64url/hex (a setting to fix, exit 2).
 */
function secretFrom(env: Env, name: string, file: string | undefined, what: string): Uint8Array {
  const text = env[name];
  const decode = (value: string, from: string): Uint8Array => {
    try {
      return decodeSecretText(value, from, { minBytes: 32 });
    } catch (err) {
      throw new UsageError(`${what}: ${err instanceof Error ? err.message : String(err)}`);
    }
  };
  if (text !== undefined && text.trim() !== '') return decode(text, name);
  if (file !== undefined) {
    let content: string;
    try {
      content = readFileSync(file, 'utf8');
    } catch (err) {
      throw new UsageError(
        `${what}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
    return decode(content, file);
  }
  throw new UsageError(`${what}: set ${name} or pass the file flag`);
}

function pinFrom(env: Env, file: string | undefined): string {
  const text = env.LATCHKEY_PKCS11_PIN;
  if (text !== undefined && text !== '') return text;
  if (file !== undefined) return readFileSync(file, 'utf8').trim();
  throw new UsageError('pkcs11: set LATCHKEY_PKCS11_PIN or pass --pkcs11-pin-file');
}

/** A PEM file named by a flag or an environment variable. */
function pemFile(file: string | undefined, what: string): string {
  if (file === undefined) throw new UsageError(`--key-manager kmip needs ${what}`);
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(
      `${what}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
}

/** The KMIP client's private key: LATCHKEY_KMIP_CLIENT_KEY (PEM text), else a file. */
function kmipClientKey(env: Env, file: string | undefined): string {
  const text = env.LATCHKEY_KMIP_CLIENT_KEY;
  if (text !== undefined && text.trim() !== '') return text;
  return pemFile(
    file,
    '--kmip-client-key FILE (or LATCHKEY_KMIP_CLIENT_KEY, LATCHKEY_KMIP_CLIENT_KEY_FILE)',
  );
}

/**
 * The key service settings of `latchkey start` from flags, then environment.
 * @throws UsageError for a missing or malformed setting.
 */
export function keyServiceSettings(
  flags: KeyStartFlags,
  env: Env = process.env,
): {
  keyManager: KeyManagerChoice;
  rotateAfterMs?: number;
  rotateAfterMessages?: number;
  shredCompleteEveryMs?: number;
  syslog?: { url: string; ca: string; servername?: string };
} {
  const kind = flags['key-manager'] ?? env.LATCHKEY_KEY_MANAGER ?? 'internal';
  let keyManager: KeyManagerChoice;
  switch (kind) {
    case 'internal':
      keyManager = { kind: 'internal' };
      break;
    case 'http': {
      const url = flags['kms-url'] ?? env.LATCHKEY_KMS_URL;
      if (!url || !/^https?:\/\//.test(url))
        throw new UsageError(
          '--key-manager http needs --kms-url (or LATCHKEY_KMS_URL) http(s)://...',
        );
      const model = flags['kms-model'] ?? env.LATCHKEY_KMS_MODEL ?? 'wrap';
      if (model !== 'wrap' && model !== 'store')
        throw new UsageError('--kms-model must be wrap or store');
      if (
        model === 'store' &&
        (flags['kms-generate'] === true || env.LATCHKEY_KMS_GENERATE === '1')
      )
        throw new UsageError(
          '--kms-generate needs the wrap model (the store model makes its own keys)',
        );
      const timeout = flags['kms-timeout'] ?? env.LATCHKEY_KMS_TIMEOUT;
      const cache = flags['kms-cache-ttl'] ?? env.LATCHKEY_KMS_CACHE_TTL;
      keyManager = {
        kind: 'http',
        url,
        model,
        keyId: flags['kms-key-id'] ?? env.LATCHKEY_KMS_KEY_ID ?? 'latchkey-kek',
        clientId: flags['kms-client-id'] ?? env.LATCHKEY_KMS_CLIENT_ID ?? 'latchkey',
        secret: secretFrom(
          env,
          'LATCHKEY_KMS_SECRET',
          flags['kms-secret-file'] ?? env.LATCHKEY_KMS_SECRET_FILE,
          'http key manager',
        ),
        ...(timeout === undefined ? {} : { timeoutMs: parseDurationMs(timeout, '--kms-timeout') }),
        ...(cache === undefined ? {} : { cacheTtlMs: parseDurationMs(cache, '--kms-cache-ttl') }),
        ...(flags['kms-generate'] === true || env.LATCHKEY_KMS_GENERATE === '1'
          ? { generate: true }
          : {}),
      };
      break;
    }
    case 'pkcs11': {
      const module = flags['pkcs11-module'] ?? env.LATCHKEY_PKCS11_MODULE;
      const tokenLabel = flags['pkcs11-token'] ?? env.LATCHKEY_PKCS11_TOKEN;
      if (!module || !tokenLabel)
        throw new UsageError(
          '--key-manager pkcs11 needs --pkcs11-module and --pkcs11-token (or LATCHKEY_PKCS11_MODULE/_TOKEN)',
        );
      const keyLabel = flags['pkcs11-key-label'] ?? env.LATCHKEY_PKCS11_KEY_LABEL;
      keyManager = {
        kind: 'pkcs11',
        module,
        tokenLabel,
        pin: pinFrom(env, flags['pkcs11-pin-file'] ?? env.LATCHKEY_PKCS11_PIN_FILE),
        ...(keyLabel === undefined ? {} : { keyLabel }),
        ...(flags['pkcs11-create-key'] === true ? { createKey: true } : {}),
      };
      break;
    }
    case 'kmip': {
      const host = flags['kmip-host'] ?? env.LATCHKEY_KMIP_HOST;
      if (!host)
        throw new UsageError('--key-manager kmip needs --kmip-host (or LATCHKEY_KMIP_HOST)');
      const port = flags['kmip-port'] ?? env.LATCHKEY_KMIP_PORT;
      if (
        port !== undefined &&
        (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535)
      ) {
        throw new UsageError('--kmip-port must be 1..65535');
      }
      const servername = flags['kmip-servername'] ?? env.LATCHKEY_KMIP_SERVERNAME;
      const keyName = flags['kmip-key-name'] ?? env.LATCHKEY_KMIP_KEY_NAME;
      const timeout = flags['kmip-timeout'] ?? env.LATCHKEY_KMIP_TIMEOUT;
      keyManager = {
        kind: 'kmip',
        host,
        ca: pemFile(
          flags['kmip-ca'] ?? env.LATCHKEY_KMIP_CA,
          '--kmip-ca FILE (or LATCHKEY_KMIP_CA)',
        ),
        cert: pemFile(
          flags['kmip-client-cert'] ?? env.LATCHKEY_KMIP_CLIENT_CERT,
          '--kmip-client-cert FILE (or LATCHKEY_KMIP_CLIENT_CERT)',
        ),
        key: kmipClientKey(env, flags['kmip-client-key'] ?? env.LATCHKEY_KMIP_CLIENT_KEY_FILE),
        ...(port === undefined ? {} : { port: Number(port) }),
        ...(servername === undefined ? {} : { servername }),
        ...(keyName === undefined ? {} : { keyName }),
        ...(timeout === undefined ? {} : { timeoutMs: parseDurationMs(timeout, '--kmip-timeout') }),
        ...(flags['kmip-create-key'] === true ? { createKey: true } : {}),
        ...(flags['kmip-no-extractable-attribute'] === true ||
        env.LATCHKEY_KMIP_EXTRACTABLE_ATTRIBUTE === 'false'
          ? { extractableAttribute: false }
          : {}),
      };
      break;
    }
    default:
      throw new UsageError('--key-manager must be internal, http, pkcs11 or kmip');
  }
  const after = flags['rotate-after'] ?? env.LATCHKEY_ROTATE_AFTER;
  const afterMessages = flags['rotate-after-messages'] ?? env.LATCHKEY_ROTATE_AFTER_MESSAGES;
  if (afterMessages !== undefined && !/^[1-9]\d{0,9}$/.test(afterMessages)) {
    throw new UsageError('--rotate-after-messages must be a positive integer');
  }
  const completeEvery = flags['shred-complete-every'] ?? env.LATCHKEY_SHRED_COMPLETE_EVERY;
  return {
    keyManager,
    ...(after === undefined ? {} : { rotateAfterMs: parseDurationMs(after, '--rotate-after') }),
    ...(afterMessages === undefined ? {} : { rotateAfterMessages: Number(afterMessages) }),
    ...(completeEvery === undefined
      ? {}
      : { shredCompleteEveryMs: parseDurationMs(completeEvery, '--shred-complete-every') }),
    ...syslogSettings(flags, env),
  };
}
