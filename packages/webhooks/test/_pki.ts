/**
 * Certificates made at test time with the openssl command (`openssl ca`, so that the validity
 * window can start in the future): a private CA and server certificates it signs.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

const stamp = (d: Date): string => d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';

export function makePki(dir: string, name = 'ca') {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl(dir, [
    'req',
    '-x509',
    ...ec,
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.pem`,
    '-subj',
    `/CN=Test CA ${name}`,
    '-days',
    '2',
  ]);
  writeFileSync(join(dir, `${name}.index`), '');
  writeFileSync(join(dir, `${name}.serial`), '01\n');
  writeFileSync(
    join(dir, `${name}.cnf`),
    `[ca]\ndefault_ca=d\n[d]\ndatabase=${name}.index\nnew_certs_dir=.\nserial=${name}.serial\ndefault_md=sha256\npolicy=p\nunique_subject=no\n[p]\ncommonName=supplied\n`,
  );
  return {
    caFile: join(dir, `${name}.pem`),
    /** A server certificate for `san`, valid from `fromDays` to `toDays` days from now. */
    issue(cert: string, opts: { san: string; fromDays: number; toDays: number }) {
      writeFileSync(join(dir, `${cert}.ext`), `subjectAltName=${opts.san}\n`);
      openssl(dir, [
        'req',
        ...ec,
        '-keyout',
        `${cert}.key`,
        '-out',
        `${cert}.csr`,
        '-subj',
        `/CN=${cert}`,
      ]);
      const day = 86_400_000;
      openssl(dir, [
        'ca',
        '-batch',
        '-config',
        `${name}.cnf`,
        '-cert',
        `${name}.pem`,
        '-keyfile',
        `${name}.key`,
        '-in',
        `${cert}.csr`,
        '-out',
        `${cert}.pem`,
        '-notext',
        '-extfile',
        `${cert}.ext`,
        '-startdate',
        stamp(new Date(Date.now() + opts.fromDays * day)),
        '-enddate',
        stamp(new Date(Date.now() + opts.toDays * day)),
      ]);
      return { certFile: join(dir, `${cert}.pem`), keyFile: join(dir, `${cert}.key`) };
    },
  };
}
