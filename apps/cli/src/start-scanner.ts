/**
 * `latchkey start --scanner [--clamd ADDR]`: runs the attachment scanner (apps/scanner, docs/
 * operations.md "Scanning attachments") in the same process as relay and key service, on
 * loopback, registered with the relay as a webhook endpoint of its own; the web app is told that
 * files are scanned. Off by default: clamd is not on a fresh machine.
 */
import { adminAuthorization, deriveAdminKey } from '@latchkey/tokens';
import { UsageError } from './usage.ts';

export interface ScannerStart {
  relayUrl: string;
  keysUrl: string;
  serviceKey: Uint8Array | string;
  apiSecret: Uint8Array;
  /** The relay's admin URL base (its own URL: the admin API is served on the relay's port). */
  port: number;
  clamd: string | undefined;
}

/** A running scanner: its webhook URL and how to stop it. */
export interface StartedScanner {
  url: string;
  close(): Promise<void>;
}

/**
 * Starts the scanner and registers it with the relay.
 * @throws UsageError on a malformed `--clamd`; Error when the relay refuses the registration.
 */
export async function startLocalScanner(o: ScannerStart): Promise<StartedScanner> {
  const scanner = await import('@latchkey/scanner-app');
  let clamd;
  try {
    clamd = scanner.parseClamdAddress(o.clamd ?? scanner.DEFAULT_CLAMD);
  } catch (err) {
    throw new UsageError(`--clamd: ${err instanceof Error ? err.message : String(err)}`);
  }
  const running = await scanner.startAttachedScanner({
    relayUrl: o.relayUrl,
    keysUrl: o.keysUrl,
    tokenKey: o.apiSecret,
    serviceKey: o.serviceKey,
    clamd,
    host: '127.0.0.1',
    port: o.port,
    relayAdmin: {
      url: o.relayUrl.replace(/^ws/, 'http'),
      authorization: adminAuthorization(deriveAdminKey(o.apiSecret)),
    },
    log: scanner.jsonLog(),
  });
  return { url: running.url, close: () => running.close() };
}
