/**
 * `latchkey start --syslog-url tls://host:port --syslog-ca FILE [--syslog-servername NAME]`:
 * the key access log as RFC 5424 syslog over TLS to a collector (docs/siem.md). Flags, else
 * LATCHKEY_SYSLOG_URL, LATCHKEY_SYSLOG_CA, LATCHKEY_SYSLOG_SERVERNAME; a plaintext `tcp://` or
 * `udp://` URL, or a URL without a CA, is a usage error (exit 2).
 */
import { readFileSync } from 'node:fs';
import { parseSyslogUrl } from '@latchkey/keyd';
import { UsageError } from './usage.ts';

export const SYSLOG_START_OPTIONS = {
  'syslog-url': { type: 'string' },
  'syslog-ca': { type: 'string' },
  'syslog-servername': { type: 'string' },
} as const;

export interface SyslogStartFlags {
  'syslog-url'?: string | undefined;
  /** PEM file: the only CA trusted for the collector's certificate. */
  'syslog-ca'?: string | undefined;
  'syslog-servername'?: string | undefined;
}

/**
 * The syslog stream of `latchkey start` from flags, then environment; none when no URL is set.
 * @throws UsageError for a malformed or plaintext URL, or a missing or unreadable CA file.
 */
export function syslogSettings(
  flags: SyslogStartFlags,
  env: Readonly<Record<string, string | undefined>>,
): { syslog?: { url: string; ca: string; servername?: string } } {
  const url = flags['syslog-url'] ?? env.LATCHKEY_SYSLOG_URL;
  if (url === undefined || url.trim() === '') return {};
  try {
    parseSyslogUrl(url);
  } catch (err) {
    throw new UsageError(`--syslog-url: ${err instanceof Error ? err.message : String(err)}`);
  }
  const caFile = flags['syslog-ca'] ?? env.LATCHKEY_SYSLOG_CA;
  if (caFile === undefined || caFile.trim() === '')
    throw new UsageError('--syslog-url needs --syslog-ca FILE (or LATCHKEY_SYSLOG_CA)');
  let ca: string;
  try {
    ca = readFileSync(caFile, 'utf8');
  } catch (err) {
    throw new UsageError(
      `--syslog-ca: cannot read ${caFile} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  if (!ca.includes('-----BEGIN CERTIFICATE-----'))
    throw new UsageError(`--syslog-ca: ${caFile} holds no PEM certificate`);
  const servername = flags['syslog-servername'] ?? env.LATCHKEY_SYSLOG_SERVERNAME;
  return { syslog: { url, ca, ...(servername ? { servername } : {}) } };
}
