/**
 * Which key manager the key service uses, from flags then environment (settings.ts): internal,
 * http (wrap or store model), pkcs11 or kmip, with their secrets from the environment or files
 * only, never from flags (docs/key-management.md).
 */
import { readFileSync } from 'node:fs';
import { decodeSecretText } from '@latchkey/keys';
import type { KeyManagerChoice } from './key-manager-choice.ts';
import { ConfigError, parseDurationMs, type Env, type KeyServiceFlags } from './settings-flags.ts';

/**
 * A shared secret from the environment variable `name`, else from `file`.
 * @throws ConfigError when neither is set, the file cannot be read, or the secret is too short
 *   or not base64url/hex.
 */
function secretFrom(env: Env, name: string, file: string | undefined, what: string): Uint8Array {
  const text = env[name];
  const decode = (value: string, from: string): Uint8Array => {
    try {
      return decodeSecretText(value, from, { minBytes: 32 });
    } catch (err) {
      throw new ConfigError(`${what}: ${err instanceof Error ? err.message : String(err)}`);
    }
  };
  if (text !== undefined && text.trim() !== '') return decode(text, name);
  if (file !== undefined) return decode(readText(file, what), file);
  throw new ConfigError(`${what}: set ${name} or pass the file flag`);
}

/** A file's text. @throws ConfigError naming `what` and the error code when unreadable. */
export function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(
      `${what}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
}

function pinFrom(env: Env, file: string | undefined): string {
  const text = env.LATCHKEY_PKCS11_PIN;
  if (text !== undefined && text !== '') return text;
  if (file !== undefined) return readText(file, 'pkcs11 PIN').trim();
  throw new ConfigError('pkcs11: set LATCHKEY_PKCS11_PIN or pass --pkcs11-pin-file');
}

/** A PEM file named by a flag or an environment variable. */
function pemFile(file: string | undefined, what: string): string {
  if (file === undefined) throw new ConfigError(`--key-manager kmip needs ${what}`);
  return readText(file, what);
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
 * The key manager from `--key-manager` (or LATCHKEY_KEY_MANAGER; default internal) and the
 * flags and variables of that kind.
 * @throws ConfigError for a missing or malformed setting.
 */
export function keyManagerSettings(flags: KeyServiceFlags, env: Env): KeyManagerChoice {
  const kind = flags['key-manager'] ?? env.LATCHKEY_KEY_MANAGER ?? 'internal';
  switch (kind) {
    case 'internal':
      return { kind: 'internal' };
    case 'http': {
      const url = flags['kms-url'] ?? env.LATCHKEY_KMS_URL;
      if (!url || !/^https?:\/\//.test(url))
        throw new ConfigError(
          '--key-manager http needs --kms-url (or LATCHKEY_KMS_URL) http(s)://...',
        );
      const model = flags['kms-model'] ?? env.LATCHKEY_KMS_MODEL ?? 'wrap';
      if (model !== 'wrap' && model !== 'store')
        throw new ConfigError('--kms-model must be wrap or store');
      const generate = flags['kms-generate'] === true || env.LATCHKEY_KMS_GENERATE === '1';
      if (model === 'store' && generate)
        throw new ConfigError(
          '--kms-generate needs the wrap model (the store model makes its own keys)',
        );
      const timeout = flags['kms-timeout'] ?? env.LATCHKEY_KMS_TIMEOUT;
      const cache = flags['kms-cache-ttl'] ?? env.LATCHKEY_KMS_CACHE_TTL;
      return {
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
        ...(generate ? { generate: true } : {}),
      };
    }
    case 'pkcs11': {
      const module = flags['pkcs11-module'] ?? env.LATCHKEY_PKCS11_MODULE;
      const tokenLabel = flags['pkcs11-token'] ?? env.LATCHKEY_PKCS11_TOKEN;
      if (!module || !tokenLabel)
        throw new ConfigError(
          '--key-manager pkcs11 needs --pkcs11-module and --pkcs11-token (or LATCHKEY_PKCS11_MODULE/_TOKEN)',
        );
      const keyLabel = flags['pkcs11-key-label'] ?? env.LATCHKEY_PKCS11_KEY_LABEL;
      return {
        kind: 'pkcs11',
        module,
        tokenLabel,
        pin: pinFrom(env, flags['pkcs11-pin-file'] ?? env.LATCHKEY_PKCS11_PIN_FILE),
        ...(keyLabel === undefined ? {} : { keyLabel }),
        ...(flags['pkcs11-create-key'] === true ? { createKey: true } : {}),
      };
    }
    case 'kmip': {
      const host = flags['kmip-host'] ?? env.LATCHKEY_KMIP_HOST;
      if (!host)
        throw new ConfigError('--key-manager kmip needs --kmip-host (or LATCHKEY_KMIP_HOST)');
      const port = flags['kmip-port'] ?? env.LATCHKEY_KMIP_PORT;
      if (
        port !== undefined &&
        (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535)
      ) {
        throw new ConfigError('--kmip-port must be 1..65535');
      }
      const servername = flags['kmip-servername'] ?? env.LATCHKEY_KMIP_SERVERNAME;
      const keyName = flags['kmip-key-name'] ?? env.LATCHKEY_KMIP_KEY_NAME;
      const timeout = flags['kmip-timeout'] ?? env.LATCHKEY_KMIP_TIMEOUT;
      return {
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
    }
    default:
      throw new ConfigError('--key-manager must be internal, http, pkcs11 or kmip');
  }
}
