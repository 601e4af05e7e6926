import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config.ts';

describe('relay config: the webhook outbox key file', () => {
  it('defaults to none (the data directory), takes the flag over the environment', () => {
    expect(parseConfig([], {}).webhookKeyFile).toBeUndefined();
    const env = { LATCHKEY_WEBHOOK_KEY_FILE: '/etc/latchkey/webhooks.key' };
    expect(parseConfig([], env).webhookKeyFile).toBe('/etc/latchkey/webhooks.key');
    expect(parseConfig(['--webhook-key-file', 'run/shared.key'], env).webhookKeyFile).toBe(
      resolve('run/shared.key'),
    );
  });
});
