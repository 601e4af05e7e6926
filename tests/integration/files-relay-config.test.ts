/**
 * The relay process's file settings (apps/relay/src/config.ts): `--files-dir`,
 * `--max-file-bytes`, `--contact-file-quota` and their LATCHKEY_RELAY_* variables, flags over
 * the environment, unset ones left to the relay's defaults, bad values refused by name; and
 * `startRelay` applies them (a file over the limit is TOO_LARGE, the blobs land in the directory).
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { mintToken } from '@latchkey/tokens';
import { startRelay } from '../../apps/relay/src/index.ts';
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

  it('startRelay applies them: the limit and the directory', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'latchkey-files-cfg-'));
    const apiSecret = crypto.getRandomValues(new Uint8Array(32));
    const relay = await startRelay({
      dataDir: dir,
      host: '127.0.0.1',
      port: 0,
      apiSecret,
      files: { dir: join(dir, 'blobs'), maxFileBytes: 1000 },
    });
    try {
      const token = await mintToken(apiSecret, {
        contactId: 'c1',
        participantId: 'v1',
        role: 'visitor',
        ttlSeconds: 60,
      });
      const create = (size: number) =>
        fetch(`${relay.url.replace('ws', 'http')}/v1/files`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ size }),
        });
      expect((await create(1001)).status).toBe(413);
      const made = await create(1000);
      expect(made.status).toBe(201);
      const { blob } = (await made.json()) as { blob: string };
      const patch = await fetch(`${relay.url.replace('ws', 'http')}/v1/files/${blob}`, {
        method: 'PATCH',
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/offset+octet-stream',
          'upload-offset': '0',
        },
        body: new Uint8Array(1000),
      });
      expect(patch.status).toBe(200);
      expect(await readdir(join(dir, 'blobs'))).toEqual([blob]);
    } finally {
      await relay.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
