/**
 * The key service's settings from flags, then environment: the one configuration path of both
 * `latchkey start` and the stand-alone `keyd` (issue 17). It turns them into the part of
 * `OpenKeyServiceOptions` that does not depend on where the process listens: the key manager
 * (internal, http, pkcs11, kmip; docs/key-management.md), the PostgreSQL key store
 * (docs/operations.md), rotation, shred completion, the degraded-mode key cache, webhooks, the
 * syslog stream (docs/siem.md), TLS, the admin allowlist and the connection limits; and, in
 * `keyServiceSecrets`, the API secret, the token public key and the master key.
 *
 * Secrets (KMS HMAC secret, HSM PIN, KMIP client key, API secret, master key) come from the
 * environment or files only, never from flags. Every error is a ConfigError naming the setting,
 * never echoing a URL or secret (a URL may hold a password): the callers exit 2 on it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  decodeSecretText,
  loadOrCreateSecretFile,
  resolveMasterKey,
  type ResolvedMasterKey,
} from '@latchkey/keys';
import { importTokenVerifyKey, parseIpAllowlist } from '@latchkey/tokens';
import { parseSyslogUrl } from './access-syslog.ts';
import type { KeyManagerChoice } from './key-manager-choice.ts';
import { limitsFromEnv } from './limits.ts';
import type { OpenKeyServiceOptions } from './open-key-service.ts';

type Env = Readonly<Record<string, string | undefined>>;

/** A configuration problem: a setting missing or malformed. Callers exit 2 with its message. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

const str = { type: 'string' } as const;
const bool = { type: 'boolean' } as const;

/** parseArgs options of the key service, taken by `latchkey start` and `keyd` alike. */
export const KEY_SERVICE_OPTIONS = {
  'key-manager': str,
  'kms-url': str,
  'kms-model': str,
  'kms-key-id': str,
  'kms-client-id': str,
  'kms-secret-file': str,
  'kms-timeout': str,
  'kms-cache-ttl': str,
  'kms-generate': bool,
  'pkcs11-module': str,
  'pkcs11-token': str,
  'pkcs11-key-label': str,
  'pkcs11-pin-file': str,
  'pkcs11-create-key': bool,
  'kmip-host': str,
  'kmip-port': str,
  'kmip-ca': str,
  'kmip-client-cert': str,
  'kmip-client-key': str,
  'kmip-servername': str,
  'kmip-key-name': str,
  'kmip-timeout': str,
  'kmip-create-key': bool,
  'kmip-no-extractable-attribute': bool,
  'rotate-after': str,
  'rotate-after-messages': str,
  'shred-complete-every': str,
  'key-cache-ttl': str,
  'keys-store': str,
  'webhook-allowlist': str,
  'admin-allowlist': str,
  'tls-cert': str,
  'tls-key': str,
  insecure: bool,
  'syslog-url': str,
  'syslog-ca': str,
  'syslog-servername': str,
} as const;

/** The values of KEY_SERVICE_OPTIONS as parseArgs gives them. */
export interface KeyServiceFlags {
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
  /** Seconds a key already unwrapped may be served while the key manager is down (0: off). */
  'key-cache-ttl'?: string | undefined;
  /** postgres://... wrapped content keys, in a database of their own (default keys/keys.db). */
  'keys-store'?: string | undefined;
  /** IPs/CIDR ranges webhook endpoints may reach although private or loopback (docs/webhooks.md). */
  'webhook-allowlist'?: string | undefined;
  /** IPs/CIDR ranges allowed to reach the admin API (default: loopback only). */
  'admin-allowlist'?: string | undefined;
  'tls-cert'?: string | undefined;
  'tls-key'?: string | undefined;
  insecure?: boolean | undefined;
  'syslog-url'?: string | undefined;
  /** PEM file: the only CA trusted for the collector's certificate. */
  'syslog-ca'?: string | undefined;
  'syslog-servername'?: string | undefined;
}

/** What keyServiceSettings gives: options of openKeyService (the caller adds where it listens). */
export type KeyServiceSettings = Pick<
  OpenKeyServiceOptions,
  | 'keyManager'
  | 'keyStoreUrl'
  | 'keyCacheTtlMs'
  | 'rotateAfterMs'
  | 'rotateAfterMessages'
  | 'shredCompleteEveryMs'
  | 'adminIpAllowlist'
  | 'tls'
  | 'insecure'
  | 'syslog'
> & {
  keyManager: KeyManagerChoice;
  /** Always on, as in `latchkey start`: the outbox in keys/webhooks.db. */
  webhooks: { allowlist?: string[] };
  insecure: boolean;
};

/**
 * A duration: 500ms, 90, 90s, 30m, 1h, 1d (bare numbers are seconds) in ms.
 * @throws ConfigError naming `flag` when malformed.
 */
export function parseDurationMs(text: string, flag: string): number {
  const m = /^(\d{1,9})(ms|s|m|h|d)?$/.exec(text.trim());
  if (!m) throw new ConfigError(`${flag} must look like 500ms, 90s, 30m, 1h or 1d`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[
    (m[2] ?? 's') as 'ms' | 's' | 'm' | 'h' | 'd'
  ];
  return Number(m[1]) * unit;
}

/** A comma-separated list; undefined when absent. */
function list(text: string | undefined): string[] | undefined {
  return text
    ?.split(',')
    .map((o) => o.trim())
    .filter((o) => o.length > 0);
}

/** `flag` when set, else the environment variable `name`, with the name to blame. */
function pick(
  flags: KeyServiceFlags,
  flag: keyof KeyServiceFlags,
  env: Env,
  name: string,
): { value: string; from: string } | undefined {
  const f = flags[flag];
  if (typeof f === 'string') return { value: f, from: `--${flag}` };
  const e = env[name];
  return e === undefined || e.trim() === '' ? undefined : { value: e, from: name };
}

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
function readText(file: string, what: string): string {
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

/**
 * The syslog stream from `--syslog-url` (or LATCHKEY_SYSLOG_URL): TLS only, with the CA file
 * read and checked here; none when no URL is set.
 * @throws ConfigError for a malformed or plaintext URL, or a missing or unreadable CA file.
 */
export function syslogSettings(flags: KeyServiceFlags, env: Env): KeyServiceSettings['syslog'] {
  const url = flags['syslog-url'] ?? env.LATCHKEY_SYSLOG_URL;
  if (url === undefined || url.trim() === '') return undefined;
  try {
    parseSyslogUrl(url);
  } catch (err) {
    throw new ConfigError(`--syslog-url: ${err instanceof Error ? err.message : String(err)}`);
  }
  const caFile = flags['syslog-ca'] ?? env.LATCHKEY_SYSLOG_CA;
  if (caFile === undefined || caFile.trim() === '')
    throw new ConfigError('--syslog-url needs --syslog-ca FILE (or LATCHKEY_SYSLOG_CA)');
  const ca = readText(caFile, '--syslog-ca');
  if (!ca.includes('-----BEGIN CERTIFICATE-----'))
    throw new ConfigError(`--syslog-ca: ${caFile} holds no PEM certificate`);
  const servername = flags['syslog-servername'] ?? env.LATCHKEY_SYSLOG_SERVERNAME;
  return { url, ca, ...(servername ? { servername } : {}) };
}

/** A postgres:// URL; the error never echoes it (it may hold a password). */
function postgresUrl(text: string, from: string): string {
  let ok: boolean;
  try {
    const u = new URL(text);
    ok = (u.protocol === 'postgres:' || u.protocol === 'postgresql:') && u.hostname !== '';
  } catch {
    ok = false;
  }
  if (!ok) throw new ConfigError(`${from} must be a postgres://... URL`);
  return text;
}

/** An IP/CIDR allowlist; the message is the parser's, naming the bad entry. */
function allowlist(text: string | undefined): string[] | undefined {
  const entries = list(text);
  if (entries === undefined) return undefined;
  try {
    parseIpAllowlist(entries);
  } catch (err) {
    throw new ConfigError(err instanceof Error ? err.message : String(err));
  }
  return entries;
}

/**
 * The key service's settings from flags, then environment:
 *
 * | flag | environment | |
 * |---|---|---|
 * | `--key-manager` and its `--kms-*`, `--pkcs11-*`, `--kmip-*` | `LATCHKEY_KEY_MANAGER`, ... | keyManagerSettings |
 * | `--keys-store postgres://...` | `LATCHKEY_KEYS_STORE` | default keys/keys.db |
 * | `--key-cache-ttl SECONDS` | `LATCHKEY_KEY_CACHE_TTL` | default 0: off |
 * | `--rotate-after 1d`, `--rotate-after-messages N` | `LATCHKEY_ROTATE_AFTER(_MESSAGES)` | default never |
 * | `--shred-complete-every 1h` | `LATCHKEY_SHRED_COMPLETE_EVERY` | default 1h |
 * | `--webhook-allowlist CIDR,...` | `LATCHKEY_WEBHOOK_ALLOWLIST` | default none |
 * | `--admin-allowlist CIDR,...` | `LATCHKEY_ADMIN_ALLOWLIST` | default loopback only |
 * | `--tls-cert FILE --tls-key FILE`, `--insecure` | `LATCHKEY_TLS_CERT`, `LATCHKEY_TLS_KEY`, `LATCHKEY_INSECURE=1` | default plain, loopback only |
 * | `--syslog-url`, `--syslog-ca`, `--syslog-servername` | `LATCHKEY_SYSLOG_*` | syslogSettings |
 *
 * and checks the connection limits `LATCHKEY_KEYS_*` (limits.ts; the service reads them itself).
 * @throws ConfigError for the first missing or malformed setting.
 */
export function keyServiceSettings(flags: KeyServiceFlags, env: Env): KeyServiceSettings {
  const keyManager = keyManagerSettings(flags, env);
  const after = flags['rotate-after'] ?? env.LATCHKEY_ROTATE_AFTER;
  const afterMessages = flags['rotate-after-messages'] ?? env.LATCHKEY_ROTATE_AFTER_MESSAGES;
  if (afterMessages !== undefined && !/^[1-9]\d{0,9}$/.test(afterMessages)) {
    throw new ConfigError('--rotate-after-messages must be a positive integer');
  }
  const completeEvery = flags['shred-complete-every'] ?? env.LATCHKEY_SHRED_COMPLETE_EVERY;

  const cache = pick(flags, 'key-cache-ttl', env, 'LATCHKEY_KEY_CACHE_TTL');
  if (cache !== undefined && !/^\d{1,9}$/.test(cache.value.trim()))
    throw new ConfigError(`${cache.from} must be a whole number of seconds, 0 or more (0: off)`);
  const keyCacheTtlMs = cache === undefined ? undefined : Number(cache.value.trim()) * 1000;

  const store = pick(flags, 'keys-store', env, 'LATCHKEY_KEYS_STORE');
  const keyStoreUrl = store === undefined ? undefined : postgresUrl(store.value, store.from);

  const certFile = flags['tls-cert'] ?? nonBlank(env.LATCHKEY_TLS_CERT);
  const keyFile = flags['tls-key'] ?? nonBlank(env.LATCHKEY_TLS_KEY);
  if ((certFile === undefined) !== (keyFile === undefined))
    throw new ConfigError('--tls-cert and --tls-key go together');
  const insecure = flags.insecure === true || env.LATCHKEY_INSECURE === '1';

  const adminIpAllowlist = allowlist(
    flags['admin-allowlist'] ?? nonBlank(env.LATCHKEY_ADMIN_ALLOWLIST),
  );
  const webhookAllowlist = allowlist(
    flags['webhook-allowlist'] ?? nonBlank(env.LATCHKEY_WEBHOOK_ALLOWLIST),
  );
  const syslog = syslogSettings(flags, env);
  try {
    limitsFromEnv(env);
  } catch (err) {
    throw new ConfigError(err instanceof Error ? err.message : String(err));
  }
  return {
    keyManager,
    ...(keyStoreUrl === undefined ? {} : { keyStoreUrl }),
    ...(keyCacheTtlMs === undefined ? {} : { keyCacheTtlMs }),
    ...(after === undefined ? {} : { rotateAfterMs: parseDurationMs(after, '--rotate-after') }),
    ...(afterMessages === undefined ? {} : { rotateAfterMessages: Number(afterMessages) }),
    ...(completeEvery === undefined
      ? {}
      : { shredCompleteEveryMs: parseDurationMs(completeEvery, '--shred-complete-every') }),
    webhooks: webhookAllowlist === undefined ? {} : { allowlist: webhookAllowlist },
    ...(adminIpAllowlist === undefined ? {} : { adminIpAllowlist }),
    ...(certFile === undefined || keyFile === undefined ? {} : { tls: { certFile, keyFile } }),
    insecure,
    ...(syslog === undefined ? {} : { syslog }),
  };
}

function nonBlank(text: string | undefined): string | undefined {
  return text === undefined || text.trim() === '' ? undefined : text;
}

/**
 * The API secret as text: `hex:`/`base64url:` prefixed, else 64 hex characters, else canonical
 * base64url of at least 32 bytes (as the relay reads LATCHKEY_API_SECRET, so that relays and key
 * services of one cluster turn one text into the same bytes).
 * @throws ConfigError on anything else.
 */
export function decodeApiSecret(text: string, name = 'LATCHKEY_API_SECRET'): Uint8Array {
  const t = text.trim();
  const bad = (): ConfigError =>
    new ConfigError(`${name} must be at least 32 bytes as base64url, or 64 hex characters`);
  if (/^(hex|base64url):/.test(t)) {
    try {
      return decodeSecretText(t, name, { minBytes: 32 });
    } catch {
      throw bad();
    }
  }
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Uint8Array.from(Buffer.from(t, 'hex'));
  if (/^[A-Za-z0-9_-]+$/.test(t)) {
    const bytes = Buffer.from(t, 'base64url');
    if (bytes.toString('base64url') === t && bytes.length >= 32) return Uint8Array.from(bytes);
  }
  throw bad();
}

/** What keyServiceSecrets gives. */
export interface KeyServiceSecrets {
  /** LATCHKEY_API_SECRET, else `<dataDir>/api-secret` (created with 32 random bytes, 0600). */
  apiSecret: Uint8Array;
  apiSecretSource: 'env' | 'file';
  /** The Ed25519 key verifying EdDSA tokens, when one was given. */
  tokenPublicKey?: NonNullable<OpenKeyServiceOptions['tokenPublicKey']>;
  /** LATCHKEY_MASTER_KEY, else `<dataDir>/master.key` (created when missing). Zero it after use. */
  master: ResolvedMasterKey;
}

/**
 * The secrets of a key service over `dataDir`: API secret, master key and, when `tokenPublicKey`
 * names one (a file, or PEM/JWK text), the token public key. The caller prints where the master
 * key came from (`master.source`, `master.created`).
 * @throws ConfigError for a malformed API secret or token public key.
 * @throws LatchkeyError KEY_UNAVAILABLE for a malformed LATCHKEY_MASTER_KEY or an unusable file.
 */
export function keyServiceSecrets(opts: {
  dataDir: string;
  env: Env;
  /** `--token-public-key FILE`, or the key itself (PEM SPKI or JWK JSON). */
  tokenPublicKey?: { file: string } | { text: string };
}): KeyServiceSecrets {
  const text = opts.env.LATCHKEY_API_SECRET;
  const fromEnv = text !== undefined && text.trim() !== '';
  const apiSecret = fromEnv
    ? decodeApiSecret(text)
    : loadOrCreateSecretFile(join(opts.dataDir, 'api-secret'));
  let tokenPublicKey: KeyServiceSecrets['tokenPublicKey'];
  if (opts.tokenPublicKey !== undefined) {
    const t =
      'file' in opts.tokenPublicKey
        ? readText(opts.tokenPublicKey.file, '--token-public-key')
        : opts.tokenPublicKey.text;
    try {
      tokenPublicKey = importTokenVerifyKey(
        t.trim().startsWith('{') ? (JSON.parse(t) as Record<string, unknown>) : t,
      );
    } catch {
      throw new ConfigError('the token public key must be an Ed25519 public key (SPKI PEM or JWK)');
    }
  }
  const master = resolveMasterKey({ env: opts.env, file: join(opts.dataDir, 'master.key') });
  return {
    apiSecret,
    apiSecretSource: fromEnv ? 'env' : 'file',
    ...(tokenPublicKey === undefined ? {} : { tokenPublicKey }),
    master,
  };
}
