/**
 * The stand-alone key service process: `node --import tsx apps/keyd/src/main.ts [flags]`.
 * Reads its configuration (config.ts), the API secret (LATCHKEY_API_SECRET or
 * `<data>/api-secret`) and the master key (LATCHKEY_MASTER_KEY or `<data>/master.key`), starts
 * the service, prints `keys: <url>` and stops cleanly on SIGTERM or SIGINT.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { decodeSecretText, loadOrCreateSecretFile, resolveMasterKey } from '@latchkey/keys';
import { LatchkeyError } from '@latchkey/protocol';
import { ConfigError, USAGE, parseConfig } from './config.ts';
import { checkOpenFiles, limitsFromEnv, resolveLimits } from './limits.ts';
import { openKeyService } from './open-key-service.ts';

/**
 * Runs the key service until SIGTERM/SIGINT. Resolves with the exit code: 0 after a clean stop,
 * 1 when it cannot start, 2 for a configuration error.
 */
export async function main(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  out: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
  err: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): Promise<number> {
  let config;
  try {
    config = parseConfig(argv, env);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    err(`keyd: ${e.message}`);
    err(USAGE);
    return 2;
  }
  if (config === null) {
    out(USAGE);
    return 0;
  }
  // Connection caps and timeouts come from LATCHKEY_KEYS_* (limits.ts), checked by parseConfig.
  const nofile = checkOpenFiles(resolveLimits(limitsFromEnv(env)).maxConnections + 256, 'keyd');
  if (nofile !== null) err(nofile);
  let service;
  try {
    const secretText = env.LATCHKEY_API_SECRET;
    const apiSecret =
      secretText !== undefined && secretText.trim() !== ''
        ? decodeSecretText(secretText, 'LATCHKEY_API_SECRET', { minBytes: 32 })
        : loadOrCreateSecretFile(join(config.dataDir, 'api-secret'));
    const master = resolveMasterKey({ env, file: join(config.dataDir, 'master.key') });
    if (master.created) err(`keyd: generated a new master key in ${master.path ?? ''} (mode 0600)`);
    service = await openKeyService({
      dataDir: config.dataDir,
      host: config.host,
      port: config.port,
      apiSecret,
      masterKey: master.key,
      logger: config.logLevel === 'silent' ? false : { level: config.logLevel },
      ...(config.allowedOrigins === undefined ? {} : { allowedOrigins: config.allowedOrigins }),
      ...(config.syslog === undefined
        ? {}
        : {
            syslog: {
              url: config.syslog.url,
              ca: await readFile(config.syslog.caFile, 'utf8'),
              ...(config.syslog.servername === undefined
                ? {}
                : { servername: config.syslog.servername }),
            },
          }),
    });
    master.key.fill(0);
  } catch (e) {
    const message = LatchkeyError.is(e) || e instanceof Error ? e.message : String(e);
    err(`keyd: cannot start: ${message}`);
    return 1;
  }
  out(`keys: ${service.url}`);
  const running = service;
  await new Promise<void>((resolveStop) => {
    const stop = (): void => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      void running.close().finally(resolveStop);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  return 0;
}

const entry = process.argv[1];
if (entry !== undefined && import.meta.url === pathToFileURL(entry).href) {
  process.exitCode = await main(process.argv.slice(2), process.env);
}
