/**
 * The scanner's configuration (config.ts): defaults, flags over environment, and refusals that
 * name the setting without echoing its value (a secret or URL may hold a password).
 */
import { generateKeyPairSync, KeyObject } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, DEFAULT_SCANNER_PORT, loadConfig } from '../src/config.ts';

const WHSEC = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
const WHSEC2 = `whsec_${Buffer.alloc(32, 8).toString('base64')}`;
const API = Buffer.alloc(32, 9).toString('base64url');
const env = { LATCHKEY_SCANNER_WEBHOOK_SECRET: WHSEC, LATCHKEY_API_SECRET: API };

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function refusal(argv: string[], e: Record<string, string | undefined>): Promise<string> {
  try {
    await loadConfig(argv, e);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('accepted');
}

describe('scanner configuration', () => {
  it('has defaults for everything but the two secrets', async () => {
    const c = await loadConfig([], env);
    expect(c).toMatchObject({
      host: '127.0.0.1',
      port: DEFAULT_SCANNER_PORT,
      path: '/webhooks',
      relayUrl: 'ws://127.0.0.1:8470',
      keysUrl: 'http://127.0.0.1:8471',
      clamd: { path: '/run/clamav/clamd.ctl' },
      streamMaxLength: 25 * 1024 * 1024,
      maxFileBytes: 25 * 1024 * 1024,
      concurrency: 2,
      idleTimeoutMs: 60_000,
      retries: 5,
      tokenTtlSeconds: 3600,
      participantId: 'scanner',
      webhookSecrets: [WHSEC],
    });
    expect(Buffer.from(c.tokenKey as Uint8Array).equals(Buffer.alloc(32, 9))).toBe(true);
  });

  it('takes flags over the environment, and caps the file size at the stream limit', async () => {
    const c = await loadConfig(
      [
        '--clamd',
        'tcp://127.0.0.1:3310',
        '--port',
        '0',
        '--idle-timeout',
        '5m',
        '--max-file-bytes',
        '999999999',
      ],
      { ...env, LATCHKEY_CLAMD: 'unix:/elsewhere', LATCHKEY_CLAMD_STREAM_MAX: '1048576' },
    );
    expect(c.clamd).toEqual({ host: '127.0.0.1', port: 3310 });
    expect(c.port).toBe(0);
    expect(c.idleTimeoutMs).toBe(300_000);
    expect(c.streamMaxLength).toBe(1048576);
    expect(c.maxFileBytes).toBe(1048576);
  });

  it('reads two webhook secrets from a file (rotation) and the API secret from the data dir', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'latchkey-scanner-config-'));
    dirs.push(dir);
    await writeFile(join(dir, 'whsec'), `${WHSEC}\n${WHSEC2}\n`);
    await writeFile(join(dir, 'api-secret'), Buffer.alloc(32, 3));
    const c = await loadConfig(['--webhook-secret-file', join(dir, 'whsec'), '--data', dir], {});
    expect(c.webhookSecrets).toEqual([WHSEC, WHSEC2]);
    expect(Buffer.from(c.tokenKey as Uint8Array).equals(Buffer.alloc(32, 3))).toBe(true);
  });

  it('mints with an Ed25519 private key from a file (EdDSA deployments) instead of the API secret', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'latchkey-scanner-config-'));
    dirs.push(dir);
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    await writeFile(join(dir, 'key.pem'), privateKey.export({ format: 'pem', type: 'pkcs8' }));
    await writeFile(join(dir, 'key.jwk'), JSON.stringify(privateKey.export({ format: 'jwk' })));
    await writeFile(join(dir, 'pub.pem'), publicKey.export({ format: 'pem', type: 'spki' }));
    const noApi = { LATCHKEY_SCANNER_WEBHOOK_SECRET: WHSEC };
    for (const f of ['key.pem', 'key.jwk']) {
      const c = await loadConfig(['--token-signing-key', join(dir, f)], noApi);
      expect(c.tokenKey).toBeInstanceOf(KeyObject);
      expect((c.tokenKey as KeyObject).asymmetricKeyType).toBe('ed25519');
    }
    expect(
      await refusal([], { ...noApi, LATCHKEY_TOKEN_SIGNING_KEY_FILE: join(dir, 'pub.pem') }),
    ).toBe('LATCHKEY_TOKEN_SIGNING_KEY_FILE must hold an Ed25519 private key (PKCS#8 PEM or JWK)');
  });

  it('refuses bad settings by name, never echoing the value', async () => {
    expect(await refusal(['--relay', 'http://u:hunter2@x'], env)).toBe(
      '--relay must be a ws:// or wss:// URL',
    );
    expect(await refusal(['--clamd', 'clamd.sock'], env)).toMatch(/^--clamd clamd address must be/);
    expect(await refusal([], { ...env, LATCHKEY_SCANNER_CONCURRENCY: '0' })).toBe(
      'LATCHKEY_SCANNER_CONCURRENCY must be 1..64',
    );
    expect(await refusal(['--token-ttl', '2d'], env)).toMatch(/^--token-ttl must be 60..86400/);
    expect(await refusal(['--participant', 'a b'], env)).toMatch(/^--participant /);
    expect(await refusal(['--bogus', '1'], env)).toMatch(/bogus/);
    const noSecret = await refusal([], { LATCHKEY_API_SECRET: API });
    expect(noSecret).toBe('LATCHKEY_SCANNER_WEBHOOK_SECRET must hold one or two whsec_... secrets');
    const badSecret = await refusal([], {
      ...env,
      LATCHKEY_SCANNER_WEBHOOK_SECRET: 'hunter2hunter2',
    });
    expect(badSecret).not.toContain('hunter2');
    const badApi = await refusal([], { ...env, LATCHKEY_API_SECRET: 'short' });
    expect(badApi).toMatch(/^LATCHKEY_API_SECRET must be/);
  });
});
