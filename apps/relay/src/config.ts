/**
 * Relay process configuration from flags and environment. Flags win over the environment:
 *   --data DIR   | LATCHKEY_DATA_DIR     (default ./.latchkey)
 *   --host H     | LATCHKEY_RELAY_HOST   (default 127.0.0.1)
 *   --port N     | LATCHKEY_RELAY_PORT   (default 8470; 0 picks a free port)
 *   --store URL  | LATCHKEY_RELAY_STORE  (postgres://...; default the SQLite file under --data)
 *   --fanout URL | LATCHKEY_RELAY_FANOUT (redis://...; default in-process, one relay only)
 *   --durability normal|full | LATCHKEY_DURABILITY (SQLite; default normal, docs/guarantees.md)
 *   --webhook-key-file PATH  | LATCHKEY_WEBHOOK_KEY_FILE (the webhook outbox key, default
 *                              <data>/relay/webhooks.db.key; one file shared by every relay on a
 *                              PostgreSQL store, docs/webhooks.md "Several processes")
 *   --quota-contact-messages N     | LATCHKEY_RELAY_QUOTA_CONTACT_MESSAGES     (default 10000)
 *   --quota-contact-bytes N        | LATCHKEY_RELAY_QUOTA_CONTACT_BYTES        (default 64 MiB)
 *   --quota-participant-messages N | LATCHKEY_RELAY_QUOTA_PARTICIPANT_MESSAGES (default 2500)
 *   --quota-participant-bytes N    | LATCHKEY_RELAY_QUOTA_PARTICIPANT_BYTES    (default 16 MiB)
 *   --files-dir PATH         | LATCHKEY_RELAY_FILES_DIR (encrypted file uploads; default the SQLite
 *                              file's path + `.files`, or the PostgreSQL store's own table)
 *   --max-file-bytes N       | LATCHKEY_RELAY_MAX_FILE_BYTES (largest file ciphertext, default 101 MiB)
 *   --contact-file-quota N   | LATCHKEY_RELAY_CONTACT_FILE_QUOTA (file bytes per contact, default 1 GiB)
 *   LATCHKEY_API_SECRET (base64url of at least 32 bytes, or 64 hex characters), else the file
 *   `<data>/api-secret` (raw bytes, as the `latchkey` CLI writes it).
 * Every value is validated before anything starts; errors name the setting, never its value.
 */
import { readFile, stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

export const DEFAULT_RELAY_PORT = 8470;
const MIN_SECRET_BYTES = 32;
const MAX_SECRET_BYTES = 1024;

/** A configuration mistake: the message names the setting and what it must be. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export interface RelayConfig {
  dataDir: string;
  host: string;
  port: number;
  /** PostgreSQL URL of the message store (undefined: SQLite under dataDir). Never logged. */
  store: string | undefined;
  /** SQLite durability: normal (survives a process crash) or full (also a power loss). */
  durability: 'normal' | 'full';
  /** Redis URL of the fan-out (undefined: in-process). Never logged. */
  fanout: string | undefined;
  /** The webhook outbox key file (undefined: `<dataDir>/relay/webhooks.db.key`). */
  webhookKeyFile: string | undefined;
  /** Storage quotas set by flag or environment (the rest: the relay's defaults). */
  quota: Partial<Record<QuotaName, number>>;
  /** File store settings set by flag or environment (the rest: the relay's defaults). */
  files: FileSettings;
  apiSecret: Uint8Array;
  /** Where the API secret came from (for the startup line; never the secret itself). */
  secretSource: 'env' | 'file';
}

const QUOTAS = {
  contactMessages: ['quota-contact-messages', 'LATCHKEY_RELAY_QUOTA_CONTACT_MESSAGES'],
  contactBytes: ['quota-contact-bytes', 'LATCHKEY_RELAY_QUOTA_CONTACT_BYTES'],
  participantMessages: ['quota-participant-messages', 'LATCHKEY_RELAY_QUOTA_PARTICIPANT_MESSAGES'],
  participantBytes: ['quota-participant-bytes', 'LATCHKEY_RELAY_QUOTA_PARTICIPANT_BYTES'],
} as const;
type QuotaName = keyof typeof QUOTAS;

/** The file store's settings (RelayOptions `files`): those set, the rest left to the relay. */
export interface FileSettings {
  dir?: string;
  maxFileBytes?: number;
  contactQuotaBytes?: number;
}

const FILE_LIMIT_SETTINGS = {
  maxFileBytes: ['max-file-bytes', 'LATCHKEY_RELAY_MAX_FILE_BYTES'],
  contactQuotaBytes: ['contact-file-quota', 'LATCHKEY_RELAY_CONTACT_FILE_QUOTA'],
} as const;

/**
 * File store settings from `--files-dir`, `--max-file-bytes`, `--contact-file-quota`, else
 * LATCHKEY_RELAY_FILES_DIR, LATCHKEY_RELAY_MAX_FILE_BYTES, LATCHKEY_RELAY_CONTACT_FILE_QUOTA
 * (unset ones left out).
 * @throws ConfigError naming the setting when a size is not a positive integer or the
 *   directory not a path.
 */
export function fileSettings(
  flags: Partial<Record<string, string | undefined>>,
  env: Readonly<Record<string, string | undefined>>,
): FileSettings {
  const files: FileSettings = {};
  for (const [name, [flag, envName]] of Object.entries(FILE_LIMIT_SETTINGS) as [
    'maxFileBytes' | 'contactQuotaBytes',
    readonly [string, string],
  ][]) {
    const text = flags[flag] ?? env[envName];
    if (text === undefined || text === '') continue;
    if (!/^\d{1,15}$/.test(text) || Number(text) < 1) {
      throw new ConfigError(
        `${flags[flag] !== undefined ? `--${flag}` : envName} must be a positive integer`,
      );
    }
    files[name] = Number(text);
  }
  const dir = flags['files-dir'] ?? env.LATCHKEY_RELAY_FILES_DIR;
  if (dir !== undefined && dir !== '') {
    if (dir.includes('\0'))
      throw new ConfigError(
        `${flags['files-dir'] !== undefined ? '--files-dir' : 'LATCHKEY_RELAY_FILES_DIR'} must be a path`,
      );
    files.dir = resolve(dir);
  }
  return files;
}

type Settings = Omit<RelayConfig, 'apiSecret' | 'secretSource'> & {
  secretText: string | undefined;
};

function port(text: string, name: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535)
    throw new ConfigError(`${name} must be a port 0..65535`);
  return Number(text);
}

function host(text: string, name: string): string {
  const ok =
    isIP(text) !== 0 ||
    /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(
      text,
    );
  if (!ok) throw new ConfigError(`${name} must be an IP address or a host name`);
  return text;
}

/** Checks a backend URL's scheme; the message never echoes the URL (it may hold a password). */
function backendUrl(
  text: string | undefined,
  name: string,
  schemes: readonly string[],
): string | undefined {
  if (text === undefined || text === '') return undefined;
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new ConfigError(
      `${name} must be a URL (${schemes.map((s) => `${s}//...`).join(' or ')})`,
    );
  }
  if (!schemes.includes(u.protocol) || u.hostname === '') {
    throw new ConfigError(
      `${name} must be a URL (${schemes.map((s) => `${s}//...`).join(' or ')})`,
    );
  }
  return text;
}

/**
 * Decodes the API secret text: 64 hex characters, or canonical base64url of 32..1024 bytes.
 * @throws ConfigError on anything else.
 */
export function decodeApiSecret(text: string, name = 'LATCHKEY_API_SECRET'): Uint8Array {
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Uint8Array.from(Buffer.from(t, 'hex'));
  if (/^[A-Za-z0-9_-]+$/.test(t)) {
    const bytes = Buffer.from(t, 'base64url');
    if (
      bytes.toString('base64url') === t &&
      bytes.length >= MIN_SECRET_BYTES &&
      bytes.length <= MAX_SECRET_BYTES
    ) {
      return Uint8Array.from(bytes);
    }
  }
  throw new ConfigError(
    `${name} must be at least ${MIN_SECRET_BYTES} bytes as base64url, or 64 hex characters`,
  );
}

/**
 * Storage quotas from `--quota-*` flags, else LATCHKEY_RELAY_QUOTA_* (unset ones left out).
 * @throws ConfigError naming the setting when one is not a positive integer.
 */
export function quotaSettings(
  flags: Partial<Record<string, string | undefined>>,
  env: Readonly<Record<string, string | undefined>>,
): Partial<Record<QuotaName, number>> {
  const quota: Partial<Record<QuotaName, number>> = {};
  for (const [name, [flag, envName]] of Object.entries(QUOTAS) as [
    QuotaName,
    readonly [string, string],
  ][]) {
    const text = flags[flag] ?? env[envName];
    if (text === undefined || text === '') continue;
    if (!/^\d{1,15}$/.test(text) || Number(text) < 1) {
      throw new ConfigError(
        `${flags[flag] !== undefined ? `--${flag}` : envName} must be a positive integer`,
      );
    }
    quota[name] = Number(text);
  }
  return quota;
}

/**
 * Parses flags and environment (no I/O).
 * @throws ConfigError on an unknown flag or an invalid value.
 */
export function parseConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): Settings {
  let values: {
    data?: string | undefined;
    host?: string | undefined;
    port?: string | undefined;
    store?: string | undefined;
    fanout?: string | undefined;
    durability?: string | undefined;
    'webhook-key-file'?: string | undefined;
    'files-dir'?: string | undefined;
    'max-file-bytes'?: string | undefined;
    'contact-file-quota'?: string | undefined;
  } & Partial<Record<(typeof QUOTAS)[QuotaName][0], string>>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        data: { type: 'string' },
        host: { type: 'string' },
        port: { type: 'string' },
        store: { type: 'string' },
        fanout: { type: 'string' },
        durability: { type: 'string' },
        'webhook-key-file': { type: 'string' },
        'quota-contact-messages': { type: 'string' },
        'quota-contact-bytes': { type: 'string' },
        'quota-participant-messages': { type: 'string' },
        'quota-participant-bytes': { type: 'string' },
        'files-dir': { type: 'string' },
        'max-file-bytes': { type: 'string' },
        'contact-file-quota': { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new ConfigError(err instanceof Error ? err.message : 'invalid arguments');
  }
  const quota = quotaSettings(values, env);
  const files = fileSettings(values, env);
  const dataText = values.data ?? env.LATCHKEY_DATA_DIR ?? './.latchkey';
  if (dataText.length === 0 || dataText.includes('\0'))
    throw new ConfigError('data directory must be a path');
  return {
    dataDir: resolve(dataText),
    host:
      values.host !== undefined
        ? host(values.host, '--host')
        : host(env.LATCHKEY_RELAY_HOST ?? '127.0.0.1', 'LATCHKEY_RELAY_HOST'),
    port:
      values.port !== undefined
        ? port(values.port, '--port')
        : env.LATCHKEY_RELAY_PORT !== undefined
          ? port(env.LATCHKEY_RELAY_PORT, 'LATCHKEY_RELAY_PORT')
          : DEFAULT_RELAY_PORT,
    store:
      values.store !== undefined
        ? backendUrl(values.store, '--store', ['postgres:', 'postgresql:'])
        : backendUrl(env.LATCHKEY_RELAY_STORE, 'LATCHKEY_RELAY_STORE', [
            'postgres:',
            'postgresql:',
          ]),
    fanout:
      values.fanout !== undefined
        ? backendUrl(values.fanout, '--fanout', ['redis:', 'rediss:'])
        : backendUrl(env.LATCHKEY_RELAY_FANOUT, 'LATCHKEY_RELAY_FANOUT', ['redis:', 'rediss:']),
    durability: durability(values.durability ?? env.LATCHKEY_DURABILITY ?? 'normal'),
    webhookKeyFile: keyFilePath(
      values['webhook-key-file'] ?? env.LATCHKEY_WEBHOOK_KEY_FILE,
      values['webhook-key-file'] !== undefined ? '--webhook-key-file' : 'LATCHKEY_WEBHOOK_KEY_FILE',
    ),
    quota,
    files,
    secretText: env.LATCHKEY_API_SECRET === '' ? undefined : env.LATCHKEY_API_SECRET,
  };
}

function keyFilePath(text: string | undefined, name: string): string | undefined {
  if (text === undefined || text === '') return undefined;
  if (text.includes('\0')) throw new ConfigError(`${name} must be a path`);
  return resolve(text);
}

function durability(text: string): 'normal' | 'full' {
  if (text !== 'normal' && text !== 'full')
    throw new ConfigError('--durability must be normal or full');
  return text;
}

/**
 * Parses flags and environment, then loads the API secret (environment, else `<data>/api-secret`).
 * @throws ConfigError on an invalid value, or a missing, unreadable or too short secret file.
 */
export async function loadConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): Promise<RelayConfig> {
  const { secretText, ...settings } = parseConfig(argv, env);
  if (secretText !== undefined) {
    return { ...settings, apiSecret: decodeApiSecret(secretText), secretSource: 'env' };
  }
  const file = join(settings.dataDir, 'api-secret');
  let bytes: Buffer;
  try {
    const info = await stat(file);
    if (!info.isFile()) throw new ConfigError(`${file} is not a file`);
    if (process.platform !== 'win32' && (info.mode & 0o077) !== 0) {
      throw new ConfigError(`${file} must be readable by its owner only (chmod 600)`);
    }
    bytes = await readFile(file);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(
      `no API secret: set LATCHKEY_API_SECRET or create ${file} (run \`latchkey start\` once)`,
    );
  }
  if (bytes.length < MIN_SECRET_BYTES || bytes.length > MAX_SECRET_BYTES) {
    throw new ConfigError(
      `${file} must hold ${MIN_SECRET_BYTES}..${MAX_SECRET_BYTES} random bytes`,
    );
  }
  return { ...settings, apiSecret: Uint8Array.from(bytes), secretSource: 'file' };
}
