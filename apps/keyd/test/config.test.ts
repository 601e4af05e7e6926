import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, DEFAULT_KEYS_PORT, USAGE, parseConfig } from '../src/config.ts';
import { KEY_SERVICE_OPTIONS } from '../src/settings.ts';

const dir = mkdtempSync(join(tmpdir(), 'latchkey-keyd-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const DEFAULT_SETTINGS = { keyManager: { kind: 'internal' }, webhooks: {}, insecure: false };

describe('parseConfig', () => {
  it('uses defaults, then environment, then flags', () => {
    expect(parseConfig([], {})).toEqual({
      dataDir: resolve('./.latchkey'),
      host: '127.0.0.1',
      port: DEFAULT_KEYS_PORT,
      logLevel: 'warn',
      settings: DEFAULT_SETTINGS,
    });
    const env = {
      LATCHKEY_DATA_DIR: '/tmp/d',
      LATCHKEY_KEYS_PORT: '9000',
      LATCHKEY_KEYS_HOST: '0.0.0.0',
      LATCHKEY_KEYS_ALLOWED_ORIGINS: 'https://a.example, http://localhost:5173',
      LATCHKEY_KEYS_LOG_LEVEL: 'info',
    };
    expect(parseConfig([], env)).toEqual({
      dataDir: '/tmp/d',
      host: '0.0.0.0',
      port: 9000,
      logLevel: 'info',
      allowedOrigins: ['https://a.example', 'http://localhost:5173'],
      settings: DEFAULT_SETTINGS,
    });
    expect(
      parseConfig(
        ['--port', '0', '--data-dir', '/tmp/e', '--allowed-origin', 'https://b.example'],
        env,
      ),
    ).toMatchObject({
      dataDir: '/tmp/e',
      port: 0,
      allowedOrigins: ['https://b.example'],
    });
    expect(parseConfig([], { LATCHKEY_KEYS_ALLOWED_ORIGINS: '*' })).not.toHaveProperty(
      'allowedOrigins',
    );
    expect(parseConfig(['--help'], {})).toBeNull();
  });

  it('reports every problem at once', () => {
    let message = '';
    try {
      parseConfig(['--port', '70000', '--host', 'a b'], {
        LATCHKEY_KEYS_ALLOWED_ORIGINS: 'https://ok.example,https://x.example/path',
        LATCHKEY_KEYS_LOG_LEVEL: 'loud',
      });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      message = (err as Error).message;
    }
    expect(message).toContain('port');
    expect(message).toContain('host');
    expect(message).toContain('https://x.example/path');
    expect(message).toContain('LATCHKEY_KEYS_LOG_LEVEL');
    expect(() => parseConfig(['--nope'], {})).toThrow(ConfigError);
  });

  it('takes a syslog collector over TLS only, with its CA', () => {
    const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
    const caFile = join(dir, 'siem-ca.pem');
    writeFileSync(caFile, pem);
    expect(
      parseConfig(['--syslog-url', 'tls://siem.example:6514'], {
        LATCHKEY_SYSLOG_CA: caFile,
        LATCHKEY_SYSLOG_SERVERNAME: 'siem.example',
      }),
    ).toMatchObject({
      settings: {
        syslog: { url: 'tls://siem.example:6514', ca: pem, servername: 'siem.example' },
      },
    });
    expect(() =>
      parseConfig(['--syslog-url', 'tcp://siem.example:514', '--syslog-ca', 'x'], {}),
    ).toThrow(/plaintext/);
    expect(() => parseConfig([], { LATCHKEY_SYSLOG_URL: 'tls://siem.example:6514' })).toThrow(
      /needs --syslog-ca/,
    );
  });
});

describe('the settings keyd shares with latchkey start', () => {
  it('takes every key-service flag of latchkey start, and lists each in its usage', () => {
    const cfg = parseConfig(
      [
        '--keys-store',
        'postgres://keys@127.0.0.1:5432/latchkey_keys',
        '--key-manager',
        'http',
        '--kms-url',
        'https://kms.example',
        '--webhook-allowlist',
        '10.0.0.0/8',
        '--admin-allowlist',
        '127.0.0.1,10.0.0.1',
        '--key-cache-ttl',
        '60',
        '--rotate-after',
        '1h',
        '--allowed-origins',
        'https://a.example,https://b.example',
      ],
      { LATCHKEY_KMS_SECRET: 'ab'.repeat(32) },
    );
    expect(cfg).toMatchObject({
      allowedOrigins: ['https://a.example', 'https://b.example'],
      settings: {
        keyStoreUrl: 'postgres://keys@127.0.0.1:5432/latchkey_keys',
        keyManager: { kind: 'http', url: 'https://kms.example' },
        webhooks: { allowlist: ['10.0.0.0/8'] },
        adminIpAllowlist: ['127.0.0.1', '10.0.0.1'],
        keyCacheTtlMs: 60_000,
        rotateAfterMs: 3_600_000,
      },
    });
    for (const flag of Object.keys(KEY_SERVICE_OPTIONS)) expect(USAGE).toContain(`--${flag}`);
    for (const name of ['LATCHKEY_KEYS_STORE', 'LATCHKEY_KEY_CACHE_TTL', 'LATCHKEY_KMS_SECRET'])
      expect(USAGE).toContain(name);
  });

  it('takes a token public key from a file or the environment', () => {
    expect(parseConfig(['--token-public-key', 'tok.pub'], {})).toMatchObject({
      tokenPublicKey: { file: resolve('tok.pub') },
    });
    expect(parseConfig([], { LATCHKEY_TOKEN_PUBLIC_KEY: '{"kty":"OKP"}' })).toMatchObject({
      tokenPublicKey: { text: '{"kty":"OKP"}' },
    });
  });

  it('reports a bad shared setting with its own problems', () => {
    let message = '';
    try {
      parseConfig(['--port', 'x', '--key-cache-ttl', '1.5'], {});
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      message = (err as Error).message;
    }
    expect(message).toContain('port (--port / LATCHKEY_KEYS_PORT) must be an integer');
    expect(message).toContain('--key-cache-ttl must be a whole number of seconds');
  });
});
