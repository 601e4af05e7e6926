import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LatchkeyError } from '@latchkey/protocol';
import { tempDir } from './_helpers.ts';
import { resolveMasterKey } from '../src/master-key.ts';
import {
  createPrivateFile,
  loadOrCreateSecret,
  loadOrCreateSecretFile,
} from '../src/secret-file.ts';

const posix = process.platform !== 'win32';
let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir()));
afterEach(() => cleanup());

function thrown(fn: () => unknown): LatchkeyError {
  try {
    fn();
  } catch (err) {
    if (LatchkeyError.is(err)) return err;
    throw err;
  }
  throw new Error('did not throw');
}

describe('resolveMasterKey', () => {
  const key = Uint8Array.from({ length: 32 }, (_, i) => i + 200);

  it('reads 32 bytes from the environment as base64url or hex', () => {
    const file = join(dir, 'master.key');
    const b64 = Buffer.from(key).toString('base64url');
    const hex = Buffer.from(key).toString('hex');
    for (const text of [b64, hex, hex.toUpperCase(), ` ${b64}\n`]) {
      const r = resolveMasterKey({ env: { LATCHKEY_MASTER_KEY: text }, file });
      expect(r).toEqual({ key, source: 'env', created: false });
    }
  });

  it('refuses anything else in the environment without echoing it', () => {
    const file = join(dir, 'master.key');
    const bad = [
      'nope!',
      'abcd',
      Buffer.alloc(31, 9).toString('base64url'),
      'ab'.repeat(33),
      Buffer.alloc(32, 9).toString('base64'),
    ];
    for (const text of bad) {
      const err = thrown(() => resolveMasterKey({ env: { LATCHKEY_MASTER_KEY: text }, file }));
      expect(err.code).toBe('KEY_UNAVAILABLE');
      expect(err.message).toMatch(/^LATCHKEY_MASTER_KEY must be 32 bytes as base64url/);
      expect(err.message).not.toContain(text);
    }
  });

  it('creates a private file on first use and reads it afterwards', () => {
    const file = join(dir, 'data', 'master.key');
    const first = resolveMasterKey({ env: { LATCHKEY_MASTER_KEY: '' }, file });
    expect(first).toMatchObject({ source: 'file', path: file, created: true });
    expect(first.key).toHaveLength(32);
    expect(new Uint8Array(readFileSync(file))).toEqual(first.key);
    if (posix) {
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(statSync(join(dir, 'data')).mode & 0o777).toBe(0o700);
    }
    const second = resolveMasterKey({ env: {}, file });
    expect(second).toEqual({ key: first.key, source: 'file', path: file, created: false });
  });

  it.skipIf(!posix)('refuses a file that group or others may read', () => {
    const file = join(dir, 'master.key');
    writeFileSync(file, Buffer.alloc(32, 5), { mode: 0o600 });
    chmodSync(file, 0o640);
    const err = thrown(() => resolveMasterKey({ env: {}, file }));
    expect(err.code).toBe('KEY_UNAVAILABLE');
    expect(err.message).toContain('mode 0640');
    chmodSync(file, 0o600);
    expect(resolveMasterKey({ env: {}, file }).key).toEqual(new Uint8Array(32).fill(5));
  });

  it('refuses a file of the wrong size and a directory', () => {
    const file = join(dir, 'master.key');
    writeFileSync(file, Buffer.alloc(31, 5), { mode: 0o600 });
    expect(thrown(() => resolveMasterKey({ env: {}, file })).message).toContain(
      'expected exactly 32',
    );
    const sub = join(dir, 'sub');
    mkdirSync(sub, { mode: 0o700 });
    expect(thrown(() => resolveMasterKey({ env: {}, file: sub })).code).toBe('KEY_UNAVAILABLE');
  });
});

describe('loadOrCreateSecretFile', () => {
  it('creates, then returns the same bytes, with the requested size', () => {
    const file = join(dir, 'api-secret');
    const a = loadOrCreateSecretFile(file);
    expect(a).toHaveLength(32);
    expect(loadOrCreateSecretFile(file)).toEqual(a);
    expect(loadOrCreateSecret(file)).toEqual({ secret: a, created: false });
    expect(loadOrCreateSecretFile(join(dir, 'big'), 64)).toHaveLength(64);
    expect(thrown(() => loadOrCreateSecretFile(join(dir, 'big'), 32)).code).toBe('KEY_UNAVAILABLE');
    expect(() => loadOrCreateSecretFile(join(dir, 'tiny'), 4)).toThrow(RangeError);
    if (posix) expect(statSync(file).mode & 0o777).toBe(0o600);
  });
});

describe('createPrivateFile', () => {
  it('creates once and never replaces an existing file', () => {
    const file = join(dir, 'a', 'b', 'f');
    expect(createPrivateFile(file, new Uint8Array([1, 2, 3]))).toBe(true);
    expect(createPrivateFile(file, new Uint8Array([4, 5, 6]))).toBe(false);
    expect([...readFileSync(file)]).toEqual([1, 2, 3]);
    if (posix) expect(statSync(file).mode & 0o777).toBe(0o600);
  });
});
