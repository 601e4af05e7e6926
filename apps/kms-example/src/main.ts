/**
 * The reference key manager process: `node --import tsx apps/kms-example/src/main.ts
 * --data DIR [--host H] [--port N]`. Reads the client's HMAC secret from `KMS_HMAC_SECRET`
 * (hex or base64url, at least 32 bytes) for the client id `KMS_CLIENT_ID` (default `latchkey`),
 * and its root key from `KMS_ROOT_KEY` or else `DIR/root.key` (created 0600). Prints
 * `kms: <url>` once it listens and stops cleanly on SIGTERM or SIGINT.
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { decodeSecretText, loadOrCreateSecret } from '@latchkey/keys';
import { startKms } from './kms.ts';

export const USAGE =
  'usage: kms-example --data DIR [--host 127.0.0.1] [--port 0]   (env KMS_HMAC_SECRET, KMS_CLIENT_ID, KMS_ROOT_KEY)';

/** Runs until SIGTERM/SIGINT; resolves with the exit code (0 clean stop, 1 cannot start, 2 usage). */
export async function main(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  out: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
  err: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: { data: { type: 'string' }, host: { type: 'string' }, port: { type: 'string' } },
      strict: true,
    }));
  } catch (e) {
    err(`kms: ${e instanceof Error ? e.message : String(e)}`);
    err(USAGE);
    return 2;
  }
  const port = Number(values.port ?? '0');
  if (values.data === undefined || !Number.isInteger(port) || port < 0 || port > 65535) {
    err(USAGE);
    return 2;
  }
  let kms;
  try {
    const secretText = env.KMS_HMAC_SECRET;
    if (secretText === undefined || secretText.trim() === '')
      throw new Error('KMS_HMAC_SECRET is not set');
    const secret = decodeSecretText(secretText, 'KMS_HMAC_SECRET', { minBytes: 32 });
    const rootText = env.KMS_ROOT_KEY;
    const rootKey =
      rootText !== undefined && rootText.trim() !== ''
        ? decodeSecretText(rootText, 'KMS_ROOT_KEY', { exactBytes: 32 })
        : loadOrCreateSecret(join(values.data, 'root.key'), 32).secret;
    kms = await startKms({
      path: join(values.data, 'kms.db'),
      rootKey,
      clients: { [env.KMS_CLIENT_ID ?? 'latchkey']: secret },
      host: values.host ?? '127.0.0.1',
      port,
    });
    rootKey.fill(0);
    secret.fill(0);
  } catch (e) {
    err(`kms: cannot start: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
  out(`kms: ${kms.url}`);
  const running = kms;
  await new Promise<void>((resolveStop) => {
    const stop = (): void => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      void running.close().finally(resolveStop);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  out('kms: stopped');
  return 0;
}

const entry = process.argv[1];
if (entry !== undefined && import.meta.url === pathToFileURL(entry).href) {
  process.exitCode = await main(process.argv.slice(2), process.env);
}
