/** The adapter over mutual TLS: a client certificate is required on top of the signature. */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { codeOf, tempDir } from '../../../packages/keys/test/_helpers.ts';
import { openHttpKeyStoreManager } from '@latchkey/keys';
import { clientOptions, withKms, type Env } from './_setup.ts';

let pkiDir: { dir: string; cleanup: () => void };
let env: Env | undefined;

function openssl(args: string[]): void {
  execFileSync('openssl', args, { cwd: pkiDir.dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A private CA and a certificate it signs, made with the openssl command. */
function issue(name: string, ext: string): { cert: Buffer; key: Buffer } {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  writeFileSync(join(pkiDir.dir, `${name}.ext`), `${ext}\n`);
  openssl(['req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
  openssl([
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    `${name}.pem`,
    '-days',
    '1',
    '-extfile',
    `${name}.ext`,
  ]);
  return {
    cert: readFileSync(join(pkiDir.dir, `${name}.pem`)),
    key: readFileSync(join(pkiDir.dir, `${name}.key`)),
  };
}

beforeEach(() => {
  pkiDir = tempDir('latchkey-kms-pki-');
});
afterEach(async () => {
  await env?.cleanup();
  env = undefined;
  pkiDir.cleanup();
});

let hasOpenssl = true;
try {
  execFileSync('openssl', ['version'], { stdio: 'ignore' });
} catch {
  hasOpenssl = false;
}

it.skipIf(!hasOpenssl && process.env.CI !== 'true')(
  'requires and accepts a client certificate (mutual TLS)',
  async () => {
    openssl([
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
      '-subj',
      '/CN=KMS Test CA',
      '-days',
      '1',
    ]);
    const ca = readFileSync(join(pkiDir.dir, 'ca.pem'));
    const server = issue('kms', 'subjectAltName=IP:127.0.0.1');
    const client = issue('keyd', 'extendedKeyUsage=clientAuth');
    env = await withKms({ tls: { ...server, ca, requestCert: true } });
    expect(env.kms.url).toMatch(/^https:/);

    const withCert = openHttpKeyStoreManager(
      clientOptions(env.kms.url, { tls: { ca, ...client } }),
    );
    expect((await withCert.getContentKey('c1')).epoch).toBe(0);
    await withCert.close();

    const without = openHttpKeyStoreManager(
      clientOptions(env.kms.url, { tls: { ca }, retries: 0 }),
    );
    expect(await codeOf(without.getContentKey('c1'))).toBe('KEY_UNAVAILABLE');
    await without.close();
    // Nor is a server outside the trusted CA accepted.
    const untrusting = openHttpKeyStoreManager(
      clientOptions(env.kms.url, { tls: client, retries: 0 }),
    );
    expect(await codeOf(untrusting.getContentKey('c1'))).toBe('KEY_UNAVAILABLE');
    await untrusting.close();
  },
);
