import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../src/config.ts';

describe('relay config: scale-out backends', () => {
  it('defaults to SQLite and the in-process fan-out', () => {
    expect(parseConfig([], {})).toMatchObject({ store: undefined, fanout: undefined });
  });

  it('takes --store and --fanout, flags over the environment', () => {
    const env = {
      LATCHKEY_RELAY_STORE: 'postgres://env@db/x',
      LATCHKEY_RELAY_FANOUT: 'redis://env:6379',
    };
    expect(parseConfig([], env)).toMatchObject({
      store: 'postgres://env@db/x',
      fanout: 'redis://env:6379',
    });
    expect(
      parseConfig(['--store', 'postgresql://u:p@db:5432/m', '--fanout', 'rediss://r:6380'], env),
    ).toMatchObject({
      store: 'postgresql://u:p@db:5432/m',
      fanout: 'rediss://r:6380',
    });
  });

  it('refuses other schemes without echoing the value (it may hold a password)', () => {
    for (const argv of [
      ['--store', 'mysql://u:hunter2@db/x'],
      ['--fanout', 'http://u:hunter2@r'],
      ['--store', 'not a url hunter2'],
    ]) {
      let err: unknown;
      try {
        parseConfig(argv, {});
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).not.toContain('hunter2');
    }
  });
});
