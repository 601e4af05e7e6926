/**
 * Relay process entry: reads the configuration (see config.ts), starts the relay, prints
 * `relay: ws://host:port` on stdout and JSON log events on stderr, and closes cleanly on
 * SIGTERM/SIGINT (pending sends are acked, clients closed with 1001). Exit codes: 0 stopped,
 * 1 failed, 2 configuration error.
 */
import { ConfigError, loadConfig } from './config.ts';
import {
  checkOpenFiles,
  DEFAULT_RELAY_MAX_CONNECTIONS,
  OPEN_FILES_RESERVE,
  startRelay,
} from './index.ts';

async function main(): Promise<number> {
  let config;
  try {
    config = await loadConfig(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`relay: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const nofile = checkOpenFiles(DEFAULT_RELAY_MAX_CONNECTIONS + OPEN_FILES_RESERVE, 'relay');
  if (nofile !== null) process.stderr.write(`${nofile}\n`);
  const relay = await startRelay({
    dataDir: config.dataDir,
    host: config.host,
    port: config.port,
    apiSecret: config.apiSecret,
    ...(config.store === undefined ? {} : { storeUrl: config.store }),
    ...(config.fanout === undefined ? {} : { fanoutUrl: config.fanout }),
    ...(config.webhookKeyFile === undefined ? {} : { webhookKeyFile: config.webhookKeyFile }),
    durability: config.durability,
    quota: config.quota,
    files: config.files,
    log: (e) => process.stderr.write(`${JSON.stringify({ t: new Date().toISOString(), ...e })}\n`),
  });
  process.stdout.write(`relay: ${relay.url}\n`);
  process.stdout.write(
    `store: ${config.store ? 'postgres' : 'sqlite'}, fanout: ${config.fanout ? 'redis' : 'in-process'}\n`,
  );
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      resolve();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  await relay.close();
  process.stdout.write('relay: stopped\n');
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const code =
      typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : 'ERROR';
    process.stderr.write(
      `relay: failed to start (${code}): ${err instanceof Error ? err.message : 'unknown error'}\n`,
    );
    process.exitCode = 1;
  },
);
