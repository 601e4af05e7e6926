/**
 * The key service's settings from flags and environment (src/settings.ts), the one path of
 * `latchkey start` and `keyd`: every flag and its variable, the defaults, and each malformed
 * value refused with a ConfigError that names the setting (never a URL or secret).
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LatchkeyError } from '@latchkey/protocol';
import {
  ConfigError,
  KEY_SERVICE_OPTIONS,
  decodeApiSecret,
  keyServiceSecrets,
  keyServiceSettings,
  parseDurationMs,
  type KeyServiceFlags,
} from '../src/settings.ts';

const dir = mkdtempSync(join(tmpdir(), 'latchkey-keyd-settings-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string): string => {
  const p = join(dir, name);
  writeFileSync(p, text, { mode: 0o600 });
  return p;
};
const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const KMS_SECRET = { LATCHKEY_KMS_SECRET: 'ab'.repeat(32) };
const http = { 'key-manager': 'http', 'kms-url': 'https://kms.example' };

/** The ConfigError message of `fn`, failing when it throws anything else or nothing. */
function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('no ConfigError');
}

describe('keyServiceSettings defaults', () => {
  it('is the internal key manager on SQLite, webhooks on, nothing else set', () => {
    expect(keyServiceSettings({}, {})).toEqual({
      keyManager: { kind: 'internal' },
      webhooks: {},
      insecure: false,
    });
  });

  it('takes every option parseArgs is given for it', () => {
    // A flag added to KEY_SERVICE_OPTIONS must be read (and so documented) here.
    expect(Object.keys(KEY_SERVICE_OPTIONS)).toContain('key-cache-ttl');
    expect(Object.keys(KEY_SERVICE_OPTIONS)).toContain('keys-store');
    for (const name of ['webhook-allowlist', 'admin-allowlist', 'tls-cert', 'tls-key', 'insecure'])
      expect(Object.keys(KEY_SERVICE_OPTIONS)).toContain(name);
  });
});

describe('--key-cache-ttl / LATCHKEY_KEY_CACHE_TTL', () => {
  it('is seconds, given as milliseconds; 0 is off', () => {
    expect(keyServiceSettings({ 'key-cache-ttl': '30' }, {}).keyCacheTtlMs).toBe(30_000);
    expect(keyServiceSettings({}, { LATCHKEY_KEY_CACHE_TTL: '5' }).keyCacheTtlMs).toBe(5000);
    expect(keyServiceSettings({ 'key-cache-ttl': '0' }, {}).keyCacheTtlMs).toBe(0);
    expect(
      keyServiceSettings({ 'key-cache-ttl': '7' }, { LATCHKEY_KEY_CACHE_TTL: '9' }).keyCacheTtlMs,
    ).toBe(7000);
    expect(keyServiceSettings({}, { LATCHKEY_KEY_CACHE_TTL: '' })).not.toHaveProperty(
      'keyCacheTtlMs',
    );
  });

  it('refuses what is not a whole number of seconds, naming the flag or the variable', () => {
    for (const bad of ['-1', '1.5', '30s', 'x', '', '1234567890'])
      expect(refusal(() => keyServiceSettings({ 'key-cache-ttl': bad }, {}))).toBe(
        '--key-cache-ttl must be a whole number of seconds, 0 or more (0: off)',
      );
    expect(refusal(() => keyServiceSettings({}, { LATCHKEY_KEY_CACHE_TTL: 'soon' }))).toMatch(
      /^LATCHKEY_KEY_CACHE_TTL must be/,
    );
  });
});

describe('--keys-store / LATCHKEY_KEYS_STORE', () => {
  it('takes a postgres:// or postgresql:// URL', () => {
    const url = 'postgres://keys:pw@db.example/latchkey_keys';
    expect(keyServiceSettings({ 'keys-store': url }, {}).keyStoreUrl).toBe(url);
    expect(keyServiceSettings({}, { LATCHKEY_KEYS_STORE: 'postgresql://db/k' }).keyStoreUrl).toBe(
      'postgresql://db/k',
    );
  });

  it('refuses anything else without echoing it', () => {
    const m = refusal(() => keyServiceSettings({ 'keys-store': 'mysql://u:secretpw@db/k' }, {}));
    expect(m).toBe('--keys-store must be a postgres://... URL');
    expect(refusal(() => keyServiceSettings({}, { LATCHKEY_KEYS_STORE: 'nope' }))).toBe(
      'LATCHKEY_KEYS_STORE must be a postgres://... URL',
    );
  });
});

describe('allowlists, TLS', () => {
  it('reads the webhook and admin allowlists from flags, else the environment', () => {
    const s = keyServiceSettings(
      { 'webhook-allowlist': '10.0.0.0/8, 127.0.0.1', 'admin-allowlist': '192.168.1.0/24' },
      {},
    );
    expect(s.webhooks).toEqual({ allowlist: ['10.0.0.0/8', '127.0.0.1'] });
    expect(s.adminIpAllowlist).toEqual(['192.168.1.0/24']);
    const e = keyServiceSettings(
      {},
      { LATCHKEY_WEBHOOK_ALLOWLIST: '::1', LATCHKEY_ADMIN_ALLOWLIST: '10.1.2.3' },
    );
    expect(e.webhooks).toEqual({ allowlist: ['::1'] });
    expect(e.adminIpAllowlist).toEqual(['10.1.2.3']);
    expect(refusal(() => keyServiceSettings({ 'webhook-allowlist': 'example.com' }, {}))).toMatch(
      /not an IP or CIDR range: example\.com/,
    );
    expect(
      refusal(() => keyServiceSettings({}, { LATCHKEY_ADMIN_ALLOWLIST: '10.0.0.0/99' })),
    ).toMatch(/10\.0\.0\.0\/99/);
  });

  it('takes a certificate and key together, and --insecure', () => {
    expect(keyServiceSettings({ 'tls-cert': 'c.pem', 'tls-key': 'k.pem' }, {}).tls).toEqual({
      certFile: 'c.pem',
      keyFile: 'k.pem',
    });
    expect(keyServiceSettings({}, { LATCHKEY_TLS_CERT: 'c', LATCHKEY_TLS_KEY: 'k' }).tls).toEqual({
      certFile: 'c',
      keyFile: 'k',
    });
    expect(refusal(() => keyServiceSettings({ 'tls-cert': 'c.pem' }, {}))).toBe(
      '--tls-cert and --tls-key go together',
    );
    expect(refusal(() => keyServiceSettings({}, { LATCHKEY_TLS_KEY: 'k' }))).toBe(
      '--tls-cert and --tls-key go together',
    );
    expect(keyServiceSettings({ insecure: true }, {}).insecure).toBe(true);
    expect(keyServiceSettings({}, { LATCHKEY_INSECURE: '1' }).insecure).toBe(true);
  });
});

describe('rotation, shred completion, durations', () => {
  it('reads each from its flag, else its variable', () => {
    expect(
      keyServiceSettings(
        { 'rotate-after': '1d', 'rotate-after-messages': '500', 'shred-complete-every': '30m' },
        {},
      ),
    ).toMatchObject({
      rotateAfterMs: 86_400_000,
      rotateAfterMessages: 500,
      shredCompleteEveryMs: 1_800_000,
    });
    expect(
      keyServiceSettings(
        {},
        {
          LATCHKEY_ROTATE_AFTER: '90',
          LATCHKEY_ROTATE_AFTER_MESSAGES: '7',
          LATCHKEY_SHRED_COMPLETE_EVERY: '2h',
        },
      ),
    ).toMatchObject({ rotateAfterMs: 90_000, rotateAfterMessages: 7, shredCompleteEveryMs: 7.2e6 });
  });

  it('refuses malformed values', () => {
    expect(refusal(() => keyServiceSettings({ 'rotate-after': 'soon' }, {}))).toBe(
      '--rotate-after must look like 500ms, 90s, 30m, 1h or 1d',
    );
    expect(refusal(() => keyServiceSettings({ 'rotate-after-messages': '0' }, {}))).toBe(
      '--rotate-after-messages must be a positive integer',
    );
    expect(refusal(() => keyServiceSettings({}, { LATCHKEY_SHRED_COMPLETE_EVERY: '1w' }))).toBe(
      '--shred-complete-every must look like 500ms, 90s, 30m, 1h or 1d',
    );
    expect(parseDurationMs('500ms', '--x')).toBe(500);
  });
});

describe('the key manager', () => {
  it('http: every flag and its variable', () => {
    const secretFile = file('kms-secret', 'cd'.repeat(32));
    const flags: KeyServiceFlags = {
      ...http,
      'kms-model': 'wrap',
      'kms-key-id': 'kek1',
      'kms-client-id': 'c1',
      'kms-secret-file': secretFile,
      'kms-timeout': '3s',
      'kms-cache-ttl': '10s',
      'kms-generate': true,
    };
    expect(keyServiceSettings(flags, {}).keyManager).toEqual({
      kind: 'http',
      url: 'https://kms.example',
      model: 'wrap',
      keyId: 'kek1',
      clientId: 'c1',
      secret: new Uint8Array(32).fill(0xcd),
      timeoutMs: 3000,
      cacheTtlMs: 10_000,
      generate: true,
    });
    expect(
      keyServiceSettings(
        {},
        {
          LATCHKEY_KEY_MANAGER: 'http',
          LATCHKEY_KMS_URL: 'http://127.0.0.1:9',
          LATCHKEY_KMS_MODEL: 'store',
          LATCHKEY_KMS_KEY_ID: 'k2',
          LATCHKEY_KMS_CLIENT_ID: 'c2',
          LATCHKEY_KMS_SECRET_FILE: secretFile,
          LATCHKEY_KMS_TIMEOUT: '1s',
          LATCHKEY_KMS_CACHE_TTL: '0',
        },
      ).keyManager,
    ).toEqual({
      kind: 'http',
      url: 'http://127.0.0.1:9',
      model: 'store',
      keyId: 'k2',
      clientId: 'c2',
      secret: new Uint8Array(32).fill(0xcd),
      timeoutMs: 1000,
      cacheTtlMs: 0,
    });
    expect(
      keyServiceSettings(http, { ...KMS_SECRET, LATCHKEY_KMS_GENERATE: '1' }).keyManager,
    ).toMatchObject({
      generate: true,
      keyId: 'latchkey-kek',
      clientId: 'latchkey',
      model: 'wrap',
    });
  });

  it('http: refusals', () => {
    expect(refusal(() => keyServiceSettings({ 'key-manager': 'http' }, KMS_SECRET))).toMatch(
      /needs --kms-url/,
    );
    expect(refusal(() => keyServiceSettings({ ...http, 'kms-model': 'x' }, KMS_SECRET))).toBe(
      '--kms-model must be wrap or store',
    );
    expect(
      refusal(() =>
        keyServiceSettings({ ...http, 'kms-model': 'store', 'kms-generate': true }, KMS_SECRET),
      ),
    ).toMatch(/needs the wrap model/);
    expect(refusal(() => keyServiceSettings(http, {}))).toBe(
      'http key manager: set LATCHKEY_KMS_SECRET or pass the file flag',
    );
    expect(refusal(() => keyServiceSettings(http, { LATCHKEY_KMS_SECRET: 'abcd' }))).toMatch(
      /^http key manager: LATCHKEY_KMS_SECRET must be at least 32 bytes/,
    );
    expect(
      refusal(() => keyServiceSettings({ ...http, 'kms-secret-file': join(dir, 'none') }, {})),
    ).toMatch(/cannot read .* \(ENOENT\)/);
    expect(refusal(() => keyServiceSettings({ ...http, 'kms-timeout': 'x' }, KMS_SECRET))).toMatch(
      /^--kms-timeout must look like/,
    );
    expect(refusal(() => keyServiceSettings({ 'key-manager': 'vault' }, {}))).toBe(
      '--key-manager must be internal, http, pkcs11 or kmip',
    );
  });

  it('pkcs11: every flag and its variable', () => {
    const pinFile = file('pin', '1234\n');
    expect(
      keyServiceSettings(
        {
          'key-manager': 'pkcs11',
          'pkcs11-module': '/lib/softhsm.so',
          'pkcs11-token': 'tok',
          'pkcs11-key-label': 'kek',
          'pkcs11-pin-file': pinFile,
          'pkcs11-create-key': true,
        },
        {},
      ).keyManager,
    ).toEqual({
      kind: 'pkcs11',
      module: '/lib/softhsm.so',
      tokenLabel: 'tok',
      keyLabel: 'kek',
      pin: '1234',
      createKey: true,
    });
    expect(
      keyServiceSettings(
        {},
        {
          LATCHKEY_KEY_MANAGER: 'pkcs11',
          LATCHKEY_PKCS11_MODULE: '/m.so',
          LATCHKEY_PKCS11_TOKEN: 't',
          LATCHKEY_PKCS11_KEY_LABEL: 'l',
          LATCHKEY_PKCS11_PIN: '9999',
        },
      ).keyManager,
    ).toEqual({ kind: 'pkcs11', module: '/m.so', tokenLabel: 't', keyLabel: 'l', pin: '9999' });
    expect(
      keyServiceSettings(
        { 'key-manager': 'pkcs11', 'pkcs11-module': '/m.so', 'pkcs11-token': 't' },
        { LATCHKEY_PKCS11_PIN_FILE: pinFile },
      ).keyManager,
    ).toMatchObject({ pin: '1234' });
    expect(
      refusal(() => keyServiceSettings({ 'key-manager': 'pkcs11', 'pkcs11-module': '/m.so' }, {})),
    ).toMatch(/needs --pkcs11-module and --pkcs11-token/);
    expect(
      refusal(() =>
        keyServiceSettings(
          { 'key-manager': 'pkcs11', 'pkcs11-module': 'm', 'pkcs11-token': 't' },
          {},
        ),
      ),
    ).toBe('pkcs11: set LATCHKEY_PKCS11_PIN or pass --pkcs11-pin-file');
  });

  it('kmip: every flag and its variable', () => {
    const ca = file('kmip-ca.pem', 'CA');
    const cert = file('kmip-cert.pem', 'CERT');
    const key = file('kmip-key.pem', 'KEY');
    expect(
      keyServiceSettings(
        {
          'key-manager': 'kmip',
          'kmip-host': 'kmip.example',
          'kmip-port': '5697',
          'kmip-ca': ca,
          'kmip-client-cert': cert,
          'kmip-client-key': key,
          'kmip-servername': 'kmip.internal',
          'kmip-key-name': 'kek',
          'kmip-timeout': '5s',
          'kmip-create-key': true,
          'kmip-no-extractable-attribute': true,
        },
        {},
      ).keyManager,
    ).toEqual({
      kind: 'kmip',
      host: 'kmip.example',
      port: 5697,
      ca: 'CA',
      cert: 'CERT',
      key: 'KEY',
      servername: 'kmip.internal',
      keyName: 'kek',
      timeoutMs: 5000,
      createKey: true,
      extractableAttribute: false,
    });
    const env = {
      LATCHKEY_KEY_MANAGER: 'kmip',
      LATCHKEY_KMIP_HOST: 'h',
      LATCHKEY_KMIP_PORT: '1',
      LATCHKEY_KMIP_CA: ca,
      LATCHKEY_KMIP_CLIENT_CERT: cert,
      LATCHKEY_KMIP_CLIENT_KEY_FILE: key,
      LATCHKEY_KMIP_SERVERNAME: 's',
      LATCHKEY_KMIP_KEY_NAME: 'n',
      LATCHKEY_KMIP_TIMEOUT: '2s',
      LATCHKEY_KMIP_EXTRACTABLE_ATTRIBUTE: 'false',
    };
    expect(keyServiceSettings({}, env).keyManager).toEqual({
      kind: 'kmip',
      host: 'h',
      port: 1,
      ca: 'CA',
      cert: 'CERT',
      key: 'KEY',
      servername: 's',
      keyName: 'n',
      timeoutMs: 2000,
      extractableAttribute: false,
    });
    expect(
      keyServiceSettings({}, { ...env, LATCHKEY_KMIP_CLIENT_KEY: 'INLINE' }).keyManager,
    ).toMatchObject({ key: 'INLINE' });
    expect(refusal(() => keyServiceSettings({ 'key-manager': 'kmip' }, {}))).toMatch(
      /needs --kmip-host/,
    );
    expect(refusal(() => keyServiceSettings({}, { ...env, LATCHKEY_KMIP_PORT: '70000' }))).toBe(
      '--kmip-port must be 1..65535',
    );
    expect(refusal(() => keyServiceSettings({}, { ...env, LATCHKEY_KMIP_CA: undefined }))).toMatch(
      /needs --kmip-ca FILE/,
    );
  });
});

describe('syslog and limits', () => {
  it('reads the collector and its CA, TLS only', () => {
    const ca = file('siem-ca.pem', PEM);
    expect(
      keyServiceSettings(
        {
          'syslog-url': 'tls://siem.example:6514',
          'syslog-ca': ca,
          'syslog-servername': 'siem',
        },
        {},
      ).syslog,
    ).toEqual({ url: 'tls://siem.example:6514', ca: PEM, servername: 'siem' });
    expect(
      keyServiceSettings({}, { LATCHKEY_SYSLOG_URL: 'tls://s:6514', LATCHKEY_SYSLOG_CA: ca })
        .syslog,
    ).toEqual({ url: 'tls://s:6514', ca: PEM });
    expect(
      refusal(() => keyServiceSettings({ 'syslog-url': 'tcp://s:514', 'syslog-ca': ca }, {})),
    ).toMatch(/^--syslog-url: .*plaintext/);
    expect(refusal(() => keyServiceSettings({ 'syslog-url': 'tls://s:6514' }, {}))).toBe(
      '--syslog-url needs --syslog-ca FILE (or LATCHKEY_SYSLOG_CA)',
    );
    expect(
      refusal(() =>
        keyServiceSettings({ 'syslog-url': 'tls://s:6514', 'syslog-ca': file('x', 'nope') }, {}),
      ),
    ).toMatch(/holds no PEM certificate/);
  });

  it('checks the connection limits of the environment', () => {
    expect(() => keyServiceSettings({}, { LATCHKEY_KEYS_MAX_CONNECTIONS: '100' })).not.toThrow();
    expect(refusal(() => keyServiceSettings({}, { LATCHKEY_KEYS_RATE_PER_IP: 'fast' }))).toMatch(
      /LATCHKEY_KEYS_RATE_PER_IP must be/,
    );
  });
});

describe('keyServiceSecrets', () => {
  it('creates the API secret and master key files once, else takes the environment', () => {
    const data = mkdtempSync(join(dir, 'data-'));
    const a = keyServiceSecrets({ dataDir: data, env: {} });
    expect(a.apiSecretSource).toBe('file');
    expect(a.master).toMatchObject({ source: 'file', created: true });
    expect(statSync(join(data, 'master.key')).mode & 0o777).toBe(0o600);
    const b = keyServiceSecrets({ dataDir: data, env: {} });
    expect(b.apiSecret).toEqual(a.apiSecret);
    expect(b.master.created).toBe(false);
    expect(new Uint8Array(readFileSync(join(data, 'api-secret')))).toEqual(a.apiSecret);
    const e = keyServiceSecrets({
      dataDir: data,
      env: { LATCHKEY_API_SECRET: '11'.repeat(32), LATCHKEY_MASTER_KEY: '22'.repeat(32) },
    });
    expect(e.apiSecret).toEqual(new Uint8Array(32).fill(0x11));
    expect(e.apiSecretSource).toBe('env');
    expect(e.master).toMatchObject({ source: 'env', key: new Uint8Array(32).fill(0x22) });
    expect(() =>
      keyServiceSecrets({ dataDir: data, env: { LATCHKEY_MASTER_KEY: 'short' } }),
    ).toThrow(LatchkeyError);
  });

  it('reads the API secret as the relay does', () => {
    const b64 = Buffer.alloc(40, 7).toString('base64url');
    expect(decodeApiSecret(b64)).toEqual(new Uint8Array(40).fill(7));
    expect(decodeApiSecret(`hex:${'ab'.repeat(40)}`)).toEqual(new Uint8Array(40).fill(0xab));
    for (const bad of ['short', 'ab'.repeat(10), `hex:${'ab'.repeat(8)}`])
      expect(refusal(() => decodeApiSecret(bad))).toBe(
        'LATCHKEY_API_SECRET must be at least 32 bytes as base64url, or 64 hex characters',
      );
  });

  it('imports a token public key from a PEM or JWK, and refuses anything else', () => {
    const data = mkdtempSync(join(dir, 'data-'));
    const { publicKey } = generateKeyPairSync('ed25519');
    const pem = file('token.pub', publicKey.export({ type: 'spki', format: 'pem' }).toString());
    const jwk = JSON.stringify(publicKey.export({ format: 'jwk' }));
    for (const tokenPublicKey of [{ file: pem }, { text: jwk }]) {
      const s = keyServiceSecrets({ dataDir: data, env: {}, tokenPublicKey });
      expect((s.tokenPublicKey as KeyObject | undefined)?.asymmetricKeyType).toBe('ed25519');
    }
    expect(
      refusal(() => keyServiceSecrets({ dataDir: data, env: {}, tokenPublicKey: { text: 'x' } })),
    ).toMatch(/Ed25519 public key/);
  });
});
