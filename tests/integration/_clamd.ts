/**
 * A clamd of the test's own (Debian's clamav-daemon binary): a temporary directory with a
 * clamd.conf (foreground, a unix socket and its logs inside the directory, nothing written
 * elsewhere) and a signature database made here, an MD5 signature (`.hdb`, `md5:size:name`) of
 * a file the test calls infected. The official database is never fetched (no freshclam), so the
 * EICAR string is not detected: only this signature is. clamd reports it as
 * `Latchkey.Test.Signature.UNOFFICIAL` (its suffix for signatures outside the official ones).
 *
 * Started as a child process and waited for by connecting to its socket until it answers PING;
 * stopped with SIGTERM. When clamd is not installed the tests skip with the reason printed,
 * except under CI=true where that is a failure (`.ci/run` installs clamav-daemon).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The name our signature has in the database, and as clamd reports it. */
export const TEST_SIGNATURE = 'Latchkey.Test.Signature';
export const REPORTED_SIGNATURE = `${TEST_SIGNATURE}.UNOFFICIAL`;

/** The bytes our signature matches (and nothing else does). */
export const INFECTED_FILE = new TextEncoder().encode(
  'Latchkey scanner test file: infected by definition of the test signature database.\n',
);

export interface TestClamd {
  /** The unix socket clamd listens on. */
  socket: string;
  /** clamd's StreamMaxLength as configured (bytes). */
  streamMaxLength: number;
  /** Stops clamd (SIGTERM, waits for it to exit). Idempotent. */
  stop(): Promise<void>;
  /** Stops clamd and removes its directory. */
  close(): Promise<void>;
  /** Starts clamd again on the same socket and database (after `stop`). */
  start(): Promise<void>;
  /** What clamd wrote to its log (for a failing test's message). */
  log(): Promise<string>;
}

function clamdBinary(): string | undefined {
  for (const p of ['/usr/sbin/clamd', '/usr/bin/clamd', '/usr/local/sbin/clamd']) {
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** True when clamd answers PING on `socket`. */
export function clamdAnswers(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(socket);
    const chunks: Buffer[] = [];
    s.setTimeout(2000, () => s.destroy());
    s.on('connect', () => s.write('zPING\0'));
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => resolve(false));
    s.on('close', () => resolve(Buffer.concat(chunks).toString('latin1') === 'PONG\0'));
  });
}

/**
 * Starts a clamd with the test signature database, or returns null (printing why) when clamd is
 * not installed outside CI.
 * @throws Error under CI=true when clamd is missing, or when clamd does not come up in 90 s.
 */
export async function startClamd(
  what: string,
  opts: { streamMaxLength?: number } = {},
): Promise<TestClamd | null> {
  const bin = clamdBinary();
  if (!bin) {
    const reason = `${what}: needs clamd (Debian package clamav-daemon)`;
    if (process.env.CI === 'true') throw new Error(reason);
    console.warn(`skipping ${reason}`);
    return null;
  }
  const dir = await mkdtemp(join(tmpdir(), 'latchkey-clamd-'));
  const db = join(dir, 'db');
  await mkdir(db);
  const md5 = createHash('md5').update(INFECTED_FILE).digest('hex');
  await writeFile(
    join(db, 'latchkey-test.hdb'),
    `${md5}:${INFECTED_FILE.length}:${TEST_SIGNATURE}\n`,
  );
  const socket = join(dir, 'clamd.sock');
  const streamMaxLength = opts.streamMaxLength ?? 4 * 1024 * 1024;
  const conf = join(dir, 'clamd.conf');
  await writeFile(
    conf,
    [
      'Foreground yes',
      `LocalSocket ${socket}`,
      'LocalSocketMode 600',
      `DatabaseDirectory ${db}`,
      `TemporaryDirectory ${dir}`,
      `LogFile ${join(dir, 'clamd.log')}`,
      'LogSyslog no',
      'LogTime yes',
      `PidFile ${join(dir, 'clamd.pid')}`,
      `StreamMaxLength ${streamMaxLength}`,
      'MaxThreads 4',
      // No self-check reload of the database during a test run.
      'SelfCheck 0',
      '',
    ].join('\n'),
  );

  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();

  const start = async (): Promise<void> => {
    const c = spawn(bin, ['--config-file', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    child = c;
    let stderr = '';
    c.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString('utf8');
    });
    let gone = false;
    exited = new Promise((resolve) =>
      c.once('exit', () => {
        gone = true;
        resolve();
      }),
    );
    const deadline = Date.now() + 90_000;
    // Waits by asking clamd itself; each failed connection returns at once, so the next try
    // waits for the socket to appear (a short back-off between tries).
    for (let delay = 20; ; delay = Math.min(delay * 2, 500)) {
      if (gone) throw new Error(`clamd exited while starting: ${stderr.trim()}`);
      if (existsSync(socket) && (await clamdAnswers(socket))) return;
      if (Date.now() > deadline) {
        c.kill('SIGKILL');
        throw new Error(`clamd did not answer within 90 s: ${stderr.trim()}`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, delay);
        c.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  };

  const stop = async (): Promise<void> => {
    const c = child;
    child = null;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    await rm(socket, { force: true });
  };

  try {
    await start();
  } catch (err) {
    await stop();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    socket,
    streamMaxLength,
    stop,
    start,
    async close() {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
    log: () => readFile(join(dir, 'clamd.log'), 'utf8').catch(() => ''),
  };
}
