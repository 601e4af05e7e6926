/**
 * The relay as a child process (apps/relay/src/main.ts through the tsx loader), for the tests
 * that kill or stop it: a free port chosen up front so that restarts keep the same URL, the
 * API secret passed through the environment, stdout lines collected.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const RELAY_MAIN = join(ROOT, 'apps', 'relay', 'src', 'main.ts');

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

export interface RelayProcess {
  child: ChildProcess;
  /** Every line the relay printed on stdout so far. */
  stdout: string[];
}

/** Starts the relay on `port` over `dataDir` and resolves once it prints its URL. */
export async function spawnRelay(opts: {
  dataDir: string;
  port: number;
  secret: Uint8Array;
}): Promise<RelayProcess> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      RELAY_MAIN,
      '--data',
      opts.dataDir,
      '--host',
      '127.0.0.1',
      '--port',
      String(opts.port),
    ],
    {
      cwd: ROOT,
      env: { ...process.env, LATCHKEY_API_SECRET: Buffer.from(opts.secret).toString('base64url') },
      stdio: ['ignore', 'pipe', 'ignore'],
    },
  );
  const stdout: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('relay did not start')), 20_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      stdout.push(line);
      if (line.startsWith('relay: ws://')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`relay exited with ${code}`)));
  });
  return { child, stdout };
}

/** Sends `signal` (default SIGKILL) unless the process is gone; resolves with its exit code. */
export async function stopRelay(
  p: RelayProcess | undefined,
  signal: NodeJS.Signals = 'SIGKILL',
): Promise<number | null> {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null)
    return p?.child.exitCode ?? null;
  const exited = new Promise<number | null>((r) => p.child.once('exit', (code) => r(code)));
  p.child.kill(signal);
  return exited;
}
