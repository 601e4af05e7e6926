/**
 * A real syslog collector for tests: rsyslogd (Debian `rsyslog` and `rsyslog-gnutls`) in the
 * foreground on loopback, receiving RFC 5425 (TLS, octet-counted frames) with imtcp and the gtls
 * stream driver under a throwaway CA, writing each message as received (`%rawmsg%`) to one file
 * and rsyslog's own parse of it (MSGID, APP-NAME, structured data) to another.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { makePki } from './certs.ts';

const RSYSLOGD = ['/usr/sbin/rsyslogd', '/sbin/rsyslogd'];
const GTLS = [
  '/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so',
  '/usr/lib/aarch64-linux-gnu/rsyslog/lmnsd_gtls.so',
  '/usr/lib/rsyslog/lmnsd_gtls.so',
];

/** Why rsyslog cannot run here, or undefined when it can. */
export function rsyslogMissing(): string | undefined {
  if (!RSYSLOGD.some((p) => existsSync(p)))
    return 'rsyslogd not installed (apt-get install rsyslog)';
  if (!GTLS.some((p) => existsSync(p)))
    return 'rsyslog TLS driver not installed (apt-get install rsyslog-gnutls)';
  return undefined;
}

export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** Resolves once something accepts TCP connections on the port. */
async function listening(port: number, ms: number, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (!alive()) throw new Error('rsyslogd exited');
    const ok = await new Promise<boolean>((resolve) => {
      const c = connect(port, '127.0.0.1');
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`rsyslogd did not listen on ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface Rsyslog {
  port: number;
  /** PEM of the CA its certificate is signed by. */
  ca: string;
  /** Messages as received, one per line. */
  raw(): string[];
  /** rsyslog's parse: `MSGID APP-NAME STRUCTURED-DATA`, one per line. */
  parsed(): string[];
  stop(): Promise<void>;
  start(): Promise<void>;
}

export async function startRsyslog(dir: string): Promise<Rsyslog> {
  mkdirSync(join(dir, 'work'), { recursive: true });
  const pki = makePki(dir);
  const server = pki.issue('collector', { san: 'DNS:localhost,IP:127.0.0.1', days: 2 });
  const port = await freePort();
  const rawFile = join(dir, 'raw.log');
  const parsedFile = join(dir, 'parsed.log');
  const conf = join(dir, 'rsyslog.conf');
  writeFileSync(
    conf,
    `global(
  workDirectory="${join(dir, 'work')}"
  defaultNetstreamDriver="gtls"
  defaultNetstreamDriverCAFile="${pki.caFile}"
  defaultNetstreamDriverCertFile="${server.certFile}"
  defaultNetstreamDriverKeyFile="${server.keyFile}"
)
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
input(type="imtcp" port="${port}" address="127.0.0.1")
template(name="raw" type="string" string="%rawmsg%\\n")
template(name="parsed" type="string" string="%msgid% %app-name% %structured-data%\\n")
action(type="omfile" file="${rawFile}" template="raw")
action(type="omfile" file="${parsedFile}" template="parsed")
`,
  );
  const bin = RSYSLOGD.find((p) => existsSync(p)) ?? 'rsyslogd';
  let child: ChildProcess | undefined;
  let exited = true;
  const lines = (f: string): string[] =>
    existsSync(f)
      ? readFileSync(f, 'utf8')
          .split('\n')
          .filter((l) => l !== '')
      : [];
  const r: Rsyslog = {
    port,
    ca: readFileSync(pki.caFile, 'utf8'),
    raw: () => lines(rawFile),
    parsed: () => lines(parsedFile),
    start: async () => {
      const c = spawn(bin, ['-n', '-f', conf, '-i', join(dir, 'rsyslogd.pid')], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      c.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
      child = c;
      exited = false;
      c.once('exit', () => {
        exited = true;
      });
      try {
        await listening(port, 20_000, () => !exited);
      } catch (err) {
        c.kill('SIGKILL');
        throw new Error(`${(err as Error).message}: ${stderr.slice(0, 500)}`, { cause: err });
      }
    },
    stop: async () => {
      const c = child;
      child = undefined;
      if (!c || exited) return;
      const gone = new Promise<void>((resolve) => c.once('exit', () => resolve()));
      c.kill('SIGTERM');
      await gone;
    },
  };
  await r.start();
  return r;
}
