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
import {
  ConfigError,
  list,
  parseDurationMs,
  pick,
  type Env,
  type KeyServiceFlags,
} from './settings-flags.ts';
import { keyManagerSettings, readText } from './settings-key-manager.ts';

export {
  ConfigError,
  KEY_SERVICE_OPTIONS,
  parseDurationMs,
  type KeyServiceFlags,
} from './settings-flags.ts';
export { keyManagerSettings } from './settings-key-manager.ts';

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
