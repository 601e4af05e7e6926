/**
 * Configuration of the stand-alone key service process, from flags, then environment, then
 * defaults. Where it listens, its data directory, origins and log level are read here; every
 * other setting (key manager, PostgreSQL key store, rotation, webhooks, syslog, TLS, admin
 * allowlist, limits, key cache) through settings.ts, the same path as `latchkey start`.
 * Everything is checked up front and every problem reported at once, so a bad deployment fails
 * at start with a clear message rather than at the first request.
 *
 * (The brief asks for zod here, but the few fields are checked by hand; the wire schemas still
 * come from @latchkey/protocol.)
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { LIMIT_ENV } from './limits.ts';
import {
  ConfigError,
  KEY_SERVICE_OPTIONS,
  keyServiceSettings,
  type KeyServiceSettings,
} from './settings.ts';

export { ConfigError } from './settings.ts';

export const DEFAULT_DATA_DIR = './.latchkey';
export const DEFAULT_KEYS_HOST = '127.0.0.1';
/** The CLI runs the relay on 8470 and the key service next to it. */
export const DEFAULT_KEYS_PORT = 8471;
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface KeydConfig {
  dataDir: string;
  host: string;
  port: number;
  /** undefined: any origin (development default). */
  allowedOrigins?: string[];
  logLevel: LogLevel;
  /** The settings shared with `latchkey start` (settings.ts). */
  settings: KeyServiceSettings;
  /** `--token-public-key FILE` or LATCHKEY_TOKEN_PUBLIC_KEY(_FILE): EdDSA tokens. */
  tokenPublicKey?: { file: string } | { text: string };
}

export const USAGE = `usage: keyd [--data-dir DIR] [--host HOST] [--port N] [--allowed-origin ORIGIN]...
  [--allowed-origins ORIGIN,...] [--token-public-key FILE]
  [--tls-cert FILE --tls-key FILE] [--insecure] [--admin-allowlist CIDR,...]
  [--webhook-allowlist CIDR,...] [--keys-store postgres://...] [--key-cache-ttl SECONDS]
  [--key-manager internal|http|pkcs11|kmip] [--kms-url URL --kms-model wrap|store
  --kms-key-id ID --kms-client-id ID --kms-secret-file FILE --kms-timeout 2s --kms-cache-ttl 0
  --kms-generate] [--pkcs11-module SO --pkcs11-token LABEL --pkcs11-key-label L
  --pkcs11-pin-file FILE --pkcs11-create-key] [--kmip-host H --kmip-port N --kmip-ca FILE
  --kmip-client-cert FILE --kmip-client-key FILE --kmip-servername NAME --kmip-key-name NAME
  --kmip-timeout 10s --kmip-create-key --kmip-no-extractable-attribute]
  [--rotate-after 1d] [--rotate-after-messages N] [--shred-complete-every 1h]
  [--syslog-url tls://HOST:PORT --syslog-ca FILE [--syslog-servername NAME]]
the same key-service flags as \`latchkey start\` (see \`latchkey help\`, docs/operations.md);
environment: LATCHKEY_DATA_DIR (default ${DEFAULT_DATA_DIR}), LATCHKEY_KEYS_HOST (default ${DEFAULT_KEYS_HOST}),
  LATCHKEY_KEYS_PORT (default ${DEFAULT_KEYS_PORT}), LATCHKEY_KEYS_ALLOWED_ORIGINS (comma-separated; default any),
  LATCHKEY_KEYS_LOG_LEVEL (${LOG_LEVELS.join('|')}; default warn),
  LATCHKEY_API_SECRET (else <data>/api-secret), LATCHKEY_MASTER_KEY (else <data>/master.key),
  LATCHKEY_TOKEN_PUBLIC_KEY (PEM or JWK) or LATCHKEY_TOKEN_PUBLIC_KEY_FILE,
  LATCHKEY_KEYS_STORE (postgres://...; default <data>/keys/keys.db),
  LATCHKEY_KEY_CACHE_TTL (seconds a key already unwrapped is served while the key manager is
  down; default 0: off), LATCHKEY_TLS_CERT, LATCHKEY_TLS_KEY, LATCHKEY_INSECURE=1,
  LATCHKEY_ADMIN_ALLOWLIST (default loopback only), LATCHKEY_WEBHOOK_ALLOWLIST,
  LATCHKEY_KEY_MANAGER, LATCHKEY_KMS_URL, LATCHKEY_KMS_MODEL, LATCHKEY_KMS_KEY_ID,
  LATCHKEY_KMS_CLIENT_ID, LATCHKEY_KMS_SECRET or LATCHKEY_KMS_SECRET_FILE, LATCHKEY_KMS_TIMEOUT,
  LATCHKEY_KMS_CACHE_TTL, LATCHKEY_KMS_GENERATE=1, LATCHKEY_PKCS11_MODULE, LATCHKEY_PKCS11_TOKEN,
  LATCHKEY_PKCS11_KEY_LABEL, LATCHKEY_PKCS11_PIN or LATCHKEY_PKCS11_PIN_FILE, LATCHKEY_KMIP_HOST,
  LATCHKEY_KMIP_PORT, LATCHKEY_KMIP_CA, LATCHKEY_KMIP_CLIENT_CERT, LATCHKEY_KMIP_CLIENT_KEY or
  LATCHKEY_KMIP_CLIENT_KEY_FILE, LATCHKEY_KMIP_SERVERNAME, LATCHKEY_KMIP_KEY_NAME,
  LATCHKEY_KMIP_TIMEOUT, LATCHKEY_KMIP_EXTRACTABLE_ATTRIBUTE=false, LATCHKEY_ROTATE_AFTER,
  LATCHKEY_ROTATE_AFTER_MESSAGES, LATCHKEY_SHRED_COMPLETE_EVERY,
  LATCHKEY_SYSLOG_URL, LATCHKEY_SYSLOG_CA, LATCHKEY_SYSLOG_SERVERNAME (docs/siem.md),
  limits (docs/operations.md): ${Object.values(LIMIT_ENV).join(', ')}`;

function checkOrigin(o: string): boolean {
  try {
    const u = new URL(o);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.origin === o;
  } catch {
    return false;
  }
}

/**
 * Reads the configuration. Returns null when `--help` was asked for.
 * @throws ConfigError listing every invalid or unknown setting.
 */
export function parseConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): KeydConfig | null {
  let flags;
  try {
    flags = parseArgs({
      args: [...argv],
      options: {
        'data-dir': { type: 'string' },
        data: { type: 'string' },
        host: { type: 'string' },
        port: { type: 'string' },
        'allowed-origin': { type: 'string', multiple: true },
        'allowed-origins': { type: 'string' },
        'token-public-key': { type: 'string' },
        ...KEY_SERVICE_OPTIONS,
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    throw new ConfigError(err instanceof Error ? err.message : String(err));
  }
  if (flags.help === true) return null;
  const issues: string[] = [];
  const nonEmpty = (v: string | undefined): string | undefined =>
    v === undefined || v.trim() === '' ? undefined : v.trim();
  const commaList = (v: string | undefined): string[] | undefined =>
    nonEmpty(v)
      ?.split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');

  const dataDir = resolve(
    nonEmpty(flags['data-dir']) ??
      nonEmpty(flags.data) ??
      nonEmpty(env.LATCHKEY_DATA_DIR) ??
      DEFAULT_DATA_DIR,
  );
  const host = nonEmpty(flags.host) ?? nonEmpty(env.LATCHKEY_KEYS_HOST) ?? DEFAULT_KEYS_HOST;
  if (!/^[A-Za-z0-9.:_-]{1,253}$/.test(host)) issues.push('host must be a host name or IP address');

  const portText = nonEmpty(flags.port) ?? nonEmpty(env.LATCHKEY_KEYS_PORT);
  let port = DEFAULT_KEYS_PORT;
  if (portText !== undefined) {
    if (/^\d{1,5}$/.test(portText) && Number(portText) <= 65535) port = Number(portText);
    else issues.push('port (--port / LATCHKEY_KEYS_PORT) must be an integer 0..65535');
  }

  let allowedOrigins: string[] | undefined;
  const originList =
    flags['allowed-origin'] ??
    commaList(flags['allowed-origins']) ??
    commaList(env.LATCHKEY_KEYS_ALLOWED_ORIGINS);
  if (originList !== undefined && !originList.includes('*')) {
    const bad = originList.filter((o) => !checkOrigin(o));
    if (bad.length > 0) {
      issues.push(
        `allowed origins must look like https://host[:port], got ${bad.map((b) => JSON.stringify(b.slice(0, 100))).join(', ')}`,
      );
    }
    allowedOrigins = originList;
  }

  const level = nonEmpty(env.LATCHKEY_KEYS_LOG_LEVEL) ?? 'warn';
  const logLevel = LOG_LEVELS.find((l) => l === level);
  if (logLevel === undefined)
    issues.push(`LATCHKEY_KEYS_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`);

  const keyFile =
    nonEmpty(flags['token-public-key']) ?? nonEmpty(env.LATCHKEY_TOKEN_PUBLIC_KEY_FILE);
  const keyText = nonEmpty(env.LATCHKEY_TOKEN_PUBLIC_KEY);
  const tokenPublicKey =
    keyFile !== undefined
      ? { file: resolve(keyFile) }
      : keyText !== undefined
        ? { text: keyText }
        : undefined;

  // Key manager, key store, rotation, webhooks, syslog, TLS, allowlists, limits: as `latchkey
  // start` reads them (settings.ts), one problem at a time.
  let settings: KeyServiceSettings | undefined;
  try {
    settings = keyServiceSettings(flags, env);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    issues.push(e.message);
  }

  if (issues.length > 0 || logLevel === undefined || settings === undefined)
    throw new ConfigError(issues.join('; '));
  return {
    dataDir,
    host,
    port,
    logLevel,
    ...(allowedOrigins === undefined ? {} : { allowedOrigins }),
    settings,
    ...(tokenPublicKey === undefined ? {} : { tokenPublicKey }),
  };
}
