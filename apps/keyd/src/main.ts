/**
 * The stand-alone key service process: `node --import tsx apps/keyd/src/main.ts [flags]`.
 * Reads its configuration (config.ts, with the key-service settings of settings.ts that
 * `latchkey start` reads too), the API secret (LATCHKEY_API_SECRET or `<data>/api-secret`) and
 * the master key (LATCHKEY_MASTER_KEY or `<data>/master.key`), starts the service, prints
 * `keys: <url>` and stops cleanly on SIGTERM or SIGINT.
 */
import { pathToFileURL } from 'node:url';
import { LatchkeyError } from '@latchkey/protocol';
import { ConfigError, USAGE, parseConfig } from './config.ts';
import { checkOpenFiles, limitsFromEnv, resolveLimits } from './limits.ts';
import { openKeyService } from './open-key-service.ts';
import { keyServiceSecrets, type KeyServiceSecrets } from './settings.ts';

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
  let secrets: KeyServiceSecrets;
  try {
    secrets = keyServiceSecrets({
      dataDir: config.dataDir,
      env,
      ...(config.tokenPublicKey === undefined ? {} : { tokenPublicKey: config.tokenPublicKey }),
    });
  } catch (e) {
    if (e instanceof ConfigError) {
      err(`keyd: ${e.message}`);
      err(USAGE);
      return 2;
    }
    const message = LatchkeyError.is(e) || e instanceof Error ? e.message : String(e);
    err(`keyd: cannot start: ${message}`);
    return 1;
  }
  const { master } = secrets;
  if (master.created) err(`keyd: generated a new master key in ${master.path ?? ''} (mode 0600)`);
  let service;
  try {
    service = await openKeyService({
      ...config.settings,
      dataDir: config.dataDir,
      host: config.host,
      port: config.port,
      apiSecret: secrets.apiSecret,
      ...(secrets.tokenPublicKey === undefined ? {} : { tokenPublicKey: secrets.tokenPublicKey }),
      masterKey: master.key,
      logger: config.logLevel === 'silent' ? false : { level: config.logLevel },
      ...(config.allowedOrigins === undefined ? {} : { allowedOrigins: config.allowedOrigins }),
    });
  } catch (e) {
    const message = LatchkeyError.is(e) || e instanceof Error ? e.message : String(e);
    err(`keyd: cannot start: ${message}`);
    return 1;
  } finally {
    master.key.fill(0);
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
