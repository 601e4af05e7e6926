/**
 * The relay process's file settings (apps/relay/src/config.ts): `--files-dir`,
 * `--max-file-bytes`, `--contact-file-quota` and their LATCHKEY_RELAY_* variables, flags over
 * the environment, unset ones left to the relay's defaults, bad values refused by name.
 */
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../apps/relay/src/config.ts';

describe('relay config: files', () => {
  it('takes flags over the environment and leaves the rest to the relay', () => {
    expect(parseConfig([], {}).files).toEqual({});
    const env = {
      LATCHKEY_RELAY_FILES_DIR: '/srv/blobs',
      LATCHKEY_RELAY_MAX_FILE_BYTES: '1000',
      LATCHKEY_RELAY_CONTACT_FILE_QUOTA: '5000',
    };
    expect(parseConfig([], env).files).toEqual({
      dir: '/srv/blobs',
      maxFileBytes: 1000,
      contactQuotaBytes: 5000,
    });
    expect(
      parseConfig(
        ['--files-dir', 'rel/dir', '--max-file-bytes', '20', '--contact-file-quota', '30'],
        env,
      ).files,
    ).toEqual({ dir: resolve('rel/dir'), maxFileBytes: 20, contactQuotaBytes: 30 });
  });

  it('refuses sizes that are not positive integers, naming the setting', () => {
    expect(() => parseConfig(['--max-file-bytes', '0'], {})).toThrow(/--max-file-bytes/);
    expect(() => parseConfig(['--contact-file-quota', '1e9'], {})).toThrow(ConfigError);
    expect(() => parseConfig([], { LATCHKEY_RELAY_MAX_FILE_BYTES: '-5' })).toThrow(
      /LATCHKEY_RELAY_MAX_FILE_BYTES/,
    );
    expect(() => parseConfig(['--files-dir', 'a\0b'], {})).toThrow(/--files-dir/);
  });
});
