/**
 * Test helpers for KMIP: certificates made at test time with the openssl command (a CA, a
 * server certificate for 127.0.0.1 and client certificates; PyKMIP wants the clientAuth
 * extended key usage), and a real PyKMIP server (Debian `python3-pykmip`) started as a child
 * process on a free port of 127.0.0.1, with its database, policies and log in a temp dir.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect as tcpConnect } from 'node:net';
import { join } from 'node:path';

export interface KmipPki {
  caFile: string;
  ca: string;
  issue(
    name: string,
    usage: 'serverAuth' | 'clientAuth',
    ca?: string,
  ): { cert: string; key: string; certFile: string; keyFile: string };
  /** Another CA in the same directory (for certificates the server must not accept). */
  otherCa(name: string): string;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

export function makeKmipPki(dir: string): KmipPki {
  const makeCa = (name: string): string => {
    openssl(dir, [
      'req',
      '-x509',
      ...EC,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.pem`,
      '-subj',
      `/CN=Latchkey KMIP ${name}`,
      '-days',
      '2',
    ]);
    return name;
  };
  makeCa('ca');
  return {
    caFile: join(dir, 'ca.pem'),
    ca: readFileSync(join(dir, 'ca.pem'), 'utf8'),
    otherCa: makeCa,
    issue(name, usage, ca = 'ca') {
      const ext =
        usage === 'serverAuth'
          ? 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'
          : 'extendedKeyUsage=clientAuth\n';
      writeFileSync(join(dir, `${name}.ext`), ext);
      openssl(dir, [
        'req',
        ...EC,
        '-keyout',
        `${name}.key`,
        '-out',
        `${name}.csr`,
        '-subj',
        `/CN=${name}`,
      ]);
      openssl(dir, [
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        `${ca}.pem`,
        '-CAkey',
        `${ca}.key`,
        '-CAcreateserial',
        '-out',
        `${name}.pem`,
        '-days',
        '2',
        '-extfile',
        `${name}.ext`,
      ]);
      const certFile = join(dir, `${name}.pem`);
      const keyFile = join(dir, `${name}.key`);
      return {
        certFile,
        keyFile,
        cert: readFileSync(certFile, 'utf8'),
        key: readFileSync(keyFile, 'utf8'),
      };
    },
  };
}

/** Why the PyKMIP server cannot run here, or undefined when it can. */
export function pykmipMissing(): string | undefined {
  for (const [cmd, args, pkg] of [
    ['pykmip-server', ['--help'], 'python3-pykmip'],
    ['openssl', ['version'], 'openssl'],
  ] as const) {
    try {
      execFileSync(cmd, [...args], { stdio: 'pipe' });
    } catch {
      return `${cmd} not found (Debian package ${pkg})`;
    }
  }
  return undefined;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      s.close(() =>
        typeof addr === 'object' && addr !== null
          ? resolve(addr.port)
          : reject(new Error('no port')),
      );
    });
  });
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export interface PykmipServer {
  port: number;
  pki: KmipPki;
  /** The client identity the server trusts. */
  client: { cert: string; key: string };
  databasePath: string;
  logPath: string;
  log(): string;
  stop(): Promise<void>;
}

/** Starts `pykmip-server -f server.conf` in `dir` and waits until it accepts connections. */
export async function startPykmip(dir: string): Promise<PykmipServer> {
  const pki = makeKmipPki(dir);
  const server = pki.issue('latchkey-kmip-server', 'serverAuth');
  const client = pki.issue('latchkey-keyd', 'clientAuth');
  const port = await freePort();
  const policies = join(dir, 'policies');
  mkdirSync(policies, { recursive: true });
  const databasePath = join(dir, 'pykmip.db');
  const logPath = join(dir, 'pykmip.log');
  const conf = join(dir, 'server.conf');
  writeFileSync(
    conf,
    [
      '[server]',
      'hostname=127.0.0.1',
      `port=${port}`,
      `certificate_path=${server.certFile}`,
      `key_path=${server.keyFile}`,
      `ca_path=${pki.caFile}`,
      'auth_suite=TLS1.2',
      `policy_path=${policies}`,
      'enable_tls_client_auth=True',
      'logging_level=INFO',
      `database_path=${databasePath}`,
      '',
    ].join('\n'),
  );
  // Its own process group: PyKMIP forks a policy-file monitor that must go down with it.
  const child: ChildProcess = spawn('pykmip-server', ['-f', conf, '-l', logPath], {
    cwd: dir,
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  const group = (signal: NodeJS.Signals): void => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, signal);
    } catch {
      // Already gone.
    }
  };
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => {
    stderr = (stderr + b.toString()).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 30_000;
  while (!(await portOpen(port))) {
    if (child.exitCode !== null) throw new Error(`pykmip-server exited: ${stderr}`);
    if (Date.now() > deadline) {
      group('SIGKILL');
      throw new Error(`pykmip-server did not listen on ${port}: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    port,
    pki,
    client,
    databasePath,
    logPath,
    log: () => readFileSync(logPath, 'utf8'),
    async stop() {
      // SIGINT is PyKMIP's orderly shutdown, but it waits for open sessions: SIGKILL the whole
      // group after a grace period, and in any case once the main process is gone.
      group('SIGINT');
      const timer = setTimeout(() => group('SIGKILL'), 3_000);
      if (child.exitCode === null && child.signalCode === null) await exited;
      clearTimeout(timer);
      group('SIGKILL');
    },
  };
}
