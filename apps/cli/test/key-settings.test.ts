/** `latchkey start`'s key manager settings from flags and environment (src/key-settings.ts). */
import { describe, expect, it } from 'vitest';
import { KEY_SERVICE_OPTIONS } from '@latchkey/keyd';
import { KEY_START_OPTIONS, keyServiceSettings } from '../src/key-settings.ts';
import { UsageError } from '../src/usage.ts';

const SECRET = { LATCHKEY_KMS_SECRET: 'ab'.repeat(32) };
const http = { 'key-manager': 'http', 'kms-url': 'https://kms.example' };

describe('--kms-generate', () => {
  it('asks the key manager to generate new keys, by flag or environment', () => {
    expect(keyServiceSettings(http, SECRET).keyManager).not.toHaveProperty('generate');
    expect(keyServiceSettings({ ...http, 'kms-generate': true }, SECRET).keyManager).toMatchObject({
      kind: 'http',
      generate: true,
    });
    expect(
      keyServiceSettings(http, { ...SECRET, LATCHKEY_KMS_GENERATE: '1' }).keyManager,
    ).toMatchObject({ generate: true });
  });

  it('is a usage error with the store model, which makes its own keys', () => {
    expect(() =>
      keyServiceSettings({ ...http, 'kms-model': 'store', 'kms-generate': true }, SECRET),
    ).toThrow(UsageError);
  });
});

describe('the shared secret', () => {
  it('takes an explicit encoding prefix', () => {
    const hex = keyServiceSettings(http, { LATCHKEY_KMS_SECRET: `hex:${'ab'.repeat(32)}` });
    const plain = keyServiceSettings(http, SECRET);
    expect(hex.keyManager).toEqual(plain.keyManager);
  });
});

describe('the settings keyd reads too', () => {
  it('are read by @latchkey/keyd, with its errors as usage errors (exit 2)', () => {
    expect(keyServiceSettings({ 'key-cache-ttl': '15' }, {}).keyCacheTtlMs).toBe(15_000);
    expect(() => keyServiceSettings({ 'key-cache-ttl': 'x' }, {})).toThrow(UsageError);
    expect(() => keyServiceSettings({ 'keys-store': 'redis://x' }, {})).toThrow(
      '--keys-store must be a postgres://... URL',
    );
    expect(() => keyServiceSettings({ 'tls-cert': 'c.pem' }, {})).toThrow(
      '--tls-cert and --tls-key go together',
    );
    expect(Object.keys(KEY_START_OPTIONS)).toEqual(Object.keys(KEY_SERVICE_OPTIONS));
  });
});
