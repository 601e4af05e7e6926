/**
 * Scanner process entry: reads the configuration (config.ts), starts the webhook receiver,
 * prints `scanner: URL` (the URL to register with `latchkey webhooks add --url URL --events
 * message.stored,participant.kicked,contact.expired`) and `clamd: ok|unreachable` on stdout,
 * JSON log events on stderr, and closes on SIGTERM/SIGINT. Exit codes: 0 stopped, 1 failed,
 * 2 configuration error.
 */
import { ClamdClient } from './clamd.ts';
import { ConfigError, loadConfig } from './config.ts';
import { jsonLog } from './log.ts';
import { startScanner } from './scanner.ts';

async function main(): Promise<number> {
  let config;
  try {
    config = await loadConfig(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`scanner: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const scanner = await startScanner({
    relayUrl: config.relayUrl,
    keysUrl: config.keysUrl,
    tokenKey: config.tokenKey,
    webhookSecrets: config.webhookSecrets,
    clamd: config.clamd,
    participantId: config.participantId,
    host: config.host,
    port: config.port,
    path: config.path,
    maxFileBytes: config.maxFileBytes,
    streamMaxLength: config.streamMaxLength,
    concurrency: config.concurrency,
    idleTimeoutMs: config.idleTimeoutMs,
    retries: config.retries,
    tokenTtlSeconds: config.tokenTtlSeconds,
    ...(config.serviceKey === undefined ? {} : { serviceKey: config.serviceKey }),
    log: jsonLog(),
  });
  process.stdout.write(`scanner: ${scanner.url}\n`);
  const up = await new ClamdClient({ address: config.clamd }).ping();
  process.stdout.write(`clamd: ${up ? 'ok' : 'unreachable'}\n`);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      resolve();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  await scanner.close();
  process.stdout.write('scanner: stopped\n');
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`scanner: failed: ${err instanceof Error ? err.name : 'error'}\n`);
    process.exitCode = 1;
  },
);
