import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, DEFAULT_KEYS_PORT, parseConfig } from '../src/config.ts';

describe('parseConfig', () => {
  it('uses defaults, then environment, then flags', () => {
    expect(parseConfig([], {})).toEqual({
      dataDir: resolve('./.latchkey'),
      host: '127.0.0.1',
      port: DEFAULT_KEYS_PORT,
      logLevel: 'warn',
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
    expect(
      parseConfig(['--syslog-url', 'tls://siem.example:6514'], {
        LATCHKEY_SYSLOG_CA: '/etc/siem-ca.pem',
        LATCHKEY_SYSLOG_SERVERNAME: 'siem.example',
      }),
    ).toMatchObject({
      syslog: {
        url: 'tls://siem.example:6514',
        caFile: '/etc/siem-ca.pem',
        servername: 'siem.example',
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
