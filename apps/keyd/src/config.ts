/**
 * Configuration of the stand-alone key service process, from flags, then environment, then
 * defaults. Everything is checked up front and every problem reported at once, so a bad
 * deployment fails at start with a clear message rather than at the first request.
 *
 * (The brief asks for zod here, but zod is not a dependency of @latchkey/keyd, so the few
 * fields are checked by hand; the wire schemas still come from @latchkey/protocol.)
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { parseSyslogUrl } from './access-syslog.ts';
import { LIMIT_ENV, limitsFromEnv } from './limits.ts';

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
  /**
   * The key access log as RFC 5424 syslog over TLS (docs/siem.md): `url` tls://host:port,
   * `caFile` the PEM file of the collector's CA, `servername` the name its certificate carries.
   */
  syslog?: { url: string; caFile: string; servername?: string };
}

/** A configuration problem; its message lists every issue found. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export const USAGE = `usage: keyd [--data-dir DIR] [--host HOST] [--port N] [--allowed-origin ORIGIN]...
  [--syslog-url tls://HOST:PORT --syslog-ca FILE [--syslog-servername NAME]]
environment: LATCHKEY_DATA_DIR (default ${DEFAULT_DATA_DIR}), LATCHKEY_KEYS_HOST (default ${DEFAULT_KEYS_HOST}),
  LATCHKEY_KEYS_PORT (default ${DEFAULT_KEYS_PORT}), LATCHKEY_KEYS_ALLOWED_ORIGINS (comma-separated; default any),
  LATCHKEY_KEYS_LOG_LEVEL (${LOG_LEVELS.join('|')}; default warn),
  LATCHKEY_API_SECRET (else <data>/api-secret), LATCHKEY_MASTER_KEY (else <data>/master.key),
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
        'syslog-url': { type: 'string' },
        'syslog-ca': { type: 'string' },
        'syslog-servername': { type: 'string' },
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
    nonEmpty(env.LATCHKEY_KEYS_ALLOWED_ORIGINS)
      ?.split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
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

  // The access log to a syslog collector: TLS only, with the CA to check it against.
  let syslog: KeydConfig['syslog'];
  const syslogUrl = nonEmpty(flags['syslog-url']) ?? nonEmpty(env.LATCHKEY_SYSLOG_URL);
  if (syslogUrl !== undefined) {
    try {
      parseSyslogUrl(syslogUrl);
    } catch (e) {
      issues.push(`--syslog-url: ${e instanceof Error ? e.message : String(e)}`);
    }
    const caFile = nonEmpty(flags['syslog-ca']) ?? nonEmpty(env.LATCHKEY_SYSLOG_CA);
    const servername =
      nonEmpty(flags['syslog-servername']) ?? nonEmpty(env.LATCHKEY_SYSLOG_SERVERNAME);
    if (caFile === undefined)
      issues.push('--syslog-url needs --syslog-ca FILE (or LATCHKEY_SYSLOG_CA)');
    else
      syslog = {
        url: syslogUrl,
        caFile: resolve(caFile),
        ...(servername === undefined ? {} : { servername }),
      };
  }

  try {
    limitsFromEnv(env);
  } catch (e) {
    issues.push(e instanceof Error ? e.message : String(e));
  }

  if (issues.length > 0 || logLevel === undefined) throw new ConfigError(issues.join('; '));
  return {
    dataDir,
    host,
    port,
    logLevel,
    ...(allowedOrigins === undefined ? {} : { allowedOrigins }),
    ...(syslog === undefined ? {} : { syslog }),
  };
}
