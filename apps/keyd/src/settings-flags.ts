/**
 * The key service's flags and the small parsers every part of its settings uses (settings.ts,
 * settings-key-manager.ts): the parseArgs options `latchkey start` and `keyd` share, the typed
 * error, durations, lists and flag-or-environment lookup.
 */
export type Env = Readonly<Record<string, string | undefined>>;

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
export function list(text: string | undefined): string[] | undefined {
  return text
    ?.split(',')
    .map((o) => o.trim())
    .filter((o) => o.length > 0);
}

/** `flag` when set, else the environment variable `name`, with the name to blame. */
export function pick(
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
