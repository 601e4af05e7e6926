/**
 * The scanner as a process (main.ts): it prints its webhook URL and whether clamd answers, takes
 * its secrets from the environment, stops cleanly on SIGTERM, and exits 2 on a configuration
 * error that names the setting (never a secret's value).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const main = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'main.ts');
const WHSEC = `whsec_${Buffer.alloc(32, 5).toString('base64')}`;
const API = Buffer.alloc(32, 6).toString('base64url');

function run(args: string[], env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', main, ...args], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  return { child, out: () => stdout, err: () => stderr };
}

describe('scanner process', () => {
  it('prints its URL and clamd state, answers /healthz, and stops on SIGTERM', async () => {
    const p = run(['--port', '0', '--clamd', 'unix:/nonexistent/clamd.sock'], {
      LATCHKEY_SCANNER_WEBHOOK_SECRET: WHSEC,
      LATCHKEY_API_SECRET: API,
    });
    while (!p.out().includes('clamd: ')) {
      await Promise.race([once(p.child.stdout, 'data'), once(p.child, 'exit')]);
      if (p.child.exitCode !== null) throw new Error(`exited: ${p.err()}`);
    }
    const url = /^scanner: (http:\/\/127\.0\.0\.1:\d+\/webhooks)$/m.exec(p.out())?.[1];
    expect(url).toBeDefined();
    expect(p.out()).toContain('clamd: unreachable');
    const health = await fetch(new URL('/healthz', url));
    expect(health.status).toBe(503);
    expect(await health.json()).toEqual({ clamd: 'unreachable' });
    // An unsigned call is refused.
    expect((await fetch(url!, { method: 'POST', body: '{}' })).status).toBe(401);
    p.child.kill('SIGTERM');
    const [code] = (await once(p.child, 'exit')) as [number | null];
    expect(code).toBe(0);
    expect(p.out()).toContain('scanner: stopped');
    expect(p.err()).not.toContain(WHSEC.slice(6));
    expect(p.err()).not.toContain(API);
  });

  it('exits 2 on a configuration error, naming the setting', async () => {
    const p = run([], {
      LATCHKEY_API_SECRET: API,
      LATCHKEY_SCANNER_WEBHOOK_SECRET: 'whsec_hunter2',
    });
    const [code] = (await once(p.child, 'exit')) as [number | null];
    expect(code).toBe(2);
    expect(p.err()).toBe('scanner: LATCHKEY_SCANNER_WEBHOOK_SECRET must hold whsec_... secrets\n');
  });
});
