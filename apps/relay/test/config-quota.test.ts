import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../src/config.ts';

describe('relay config: storage quotas', () => {
  it('takes quotas from flags over the environment; unset ones stay the defaults', () => {
    expect(parseConfig([], {}).quota).toEqual({});
    const env = {
      LATCHKEY_RELAY_QUOTA_CONTACT_BYTES: '1000000',
      LATCHKEY_RELAY_QUOTA_PARTICIPANT_MESSAGES: '50',
    };
    expect(parseConfig(['--quota-participant-messages', '20'], env).quota).toEqual({
      contactBytes: 1_000_000,
      participantMessages: 20,
    });
  });

  it('refuses a quota that is not a positive integer, naming the setting', () => {
    expect(() => parseConfig(['--quota-contact-messages', '0'], {})).toThrow(ConfigError);
    expect(() => parseConfig([], { LATCHKEY_RELAY_QUOTA_PARTICIPANT_BYTES: '1e6' })).toThrow(
      /LATCHKEY_RELAY_QUOTA_PARTICIPANT_BYTES/,
    );
  });
});
