/** Starts test/fixtures/receiver.ts in a child process and talks to it. */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');

export interface Receiver {
  port: number;
  url: string;
  received(): Promise<
    { id: string; type: string; headers: Record<string, string>; body: string }[]
  >;
  stop(): Promise<void>;
}

export async function startReceiver(env: {
  SECRETS: string;
  PORT?: string;
  TLS_CERT?: string;
  TLS_KEY?: string;
}): Promise<Receiver> {
  const child: ChildProcess = spawn(
    process.execPath,
    ['--import', 'tsx', join(here, 'fixtures', 'receiver.ts')],
    {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /listening (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`receiver exited ${code}`)));
  });
  const scheme = env.TLS_CERT ? 'https' : 'http';
  return {
    port,
    url: `${scheme}://127.0.0.1:${port}/hook`,
    async received() {
      const r = await fetch(`http://127.0.0.1:${port}/received`);
      return (await r.json()) as {
        id: string;
        type: string;
        headers: Record<string, string>;
        body: string;
      }[];
    },
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
