/**
 * Secret files and secret text: the master key and the API secret live either in the
 * environment (hex or base64url) or in a file of raw random bytes that only its owner may read
 * (mode 0600 in a 0700 directory, like ssh keys). A file that group or others can read, or of
 * the wrong size, is refused rather than silently used or replaced.
 */
import {
  closeSync,
  existsSync,
  fchmodSync,
  fstatSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readSync,
  unlinkSync,
  writeSync,
  chmodSync,
  constants,
} from 'node:fs';
import { dirname } from 'node:path';
import { fromBase64Url, toBase64Url } from '@latchkey/crypto/codec';
import { randomBytes } from '@latchkey/crypto/random';
import { LatchkeyError } from '@latchkey/protocol';

/** A secret and whether it was just created. */
export interface SecretFile {
  secret: Uint8Array;
  /** True when the file did not exist and was just created with fresh random bytes. */
  created: boolean;
}

const POSIX = process.platform !== 'win32';

function fail(message: string, cause?: unknown): never {
  throw new LatchkeyError('KEY_UNAVAILABLE', message, cause === undefined ? undefined : { cause });
}

function errno(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}

/**
 * Decodes secret text from the environment: exactly `2 * n` hex characters, or base64url
 * (without padding) of `n` bytes. With `exactBytes` the length must match; otherwise at least
 * `minBytes` (default 32) are required. Hex is tried first; the prefixes `hex:` and
 * `base64url:` say which one it is and so take away any doubt (a base64url text that happens to
 * be made only of hex digits). The value never appears in errors.
 * @throws LatchkeyError KEY_UNAVAILABLE naming `name` when the text is neither form or has the
 *   wrong length.
 */
export function decodeSecretText(
  text: string,
  name: string,
  opts: { exactBytes?: number; minBytes?: number } = {},
): Uint8Array {
  let t = text.trim();
  let only: 'hex' | 'base64url' | undefined;
  for (const p of ['hex', 'base64url'] as const) {
    if (t.startsWith(`${p}:`)) {
      only = p;
      t = t.slice(p.length + 1);
      break;
    }
  }
  const min = opts.exactBytes ?? opts.minBytes ?? 32;
  const fits = (n: number): boolean => (opts.exactBytes === undefined ? n >= min : n === min);
  const want =
    opts.exactBytes === undefined
      ? `at least ${min} bytes as base64url or hex`
      : `${min} bytes as base64url (${Math.ceil((min * 4) / 3)} characters) or ${min * 2} hex characters`;
  if (only === 'hex') {
    if (!/^[0-9a-fA-F]*$/.test(t) || t.length % 2 !== 0)
      fail(`${name} must be ${want}; it is not hex`);
    if (!fits(t.length / 2)) fail(`${name} must be ${want}; it decodes to ${t.length / 2} bytes`);
    return Uint8Array.from(Buffer.from(t, 'hex'));
  }
  if (only === undefined && /^[0-9a-fA-F]+$/.test(t) && t.length % 2 === 0 && fits(t.length / 2)) {
    return Uint8Array.from(Buffer.from(t, 'hex'));
  }
  let bytes: Uint8Array;
  try {
    bytes = fromBase64Url(t);
  } catch {
    fail(`${name} must be ${want}; it is neither`);
  }
  // fromBase64Url is strict, but make sure no non-canonical form slipped through.
  if (toBase64Url(bytes) !== t) fail(`${name} must be ${want}; it is not canonical base64url`);
  if (!fits(bytes.length)) fail(`${name} must be ${want}; it decodes to ${bytes.length} bytes`);
  return bytes;
}

/**
 * Reads a private file of exactly `bytes` bytes.
 * @throws LatchkeyError KEY_UNAVAILABLE when it cannot be opened, is not a regular file, is
 *   readable by group or others, or has another size.
 */
export function readPrivateFile(path: string, bytes: number): Uint8Array {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY);
  } catch (err) {
    fail(`cannot open secret file ${path}: ${errno(err) ?? 'error'}`, err);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) fail(`secret file ${path} is not a regular file`);
    if (POSIX && (st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
      fail(
        `secret file ${path} has mode ${mode}: group or others may read it; run chmod 600 on it`,
      );
    }
    if (st.size !== bytes) {
      fail(`secret file ${path} holds ${st.size} bytes, expected exactly ${bytes}`);
    }
    const out = new Uint8Array(bytes);
    let off = 0;
    while (off < bytes) {
      const n = readSync(fd, out, off, bytes - off, off);
      if (n === 0) fail(`secret file ${path} is shorter than ${bytes} bytes`);
      off += n;
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

function ensurePrivateDir(dir: string): void {
  const first = mkdirSync(dir, { recursive: true, mode: 0o700 });
  // Only directories we created are tightened; an operator's existing directory is left alone.
  if (first !== undefined && POSIX) chmodSync(dir, 0o700);
}

/**
 * Creates `path` holding `content`, mode 0600 (missing parent directories 0700), atomically: it
 * is written to a private temp file and hard-linked into place, so no reader ever sees it half
 * written and an existing file is never replaced.
 * @returns false when `path` already existed (content not written).
 * @throws LatchkeyError KEY_UNAVAILABLE when the file cannot be created.
 */
export function createPrivateFile(path: string, content: Uint8Array): boolean {
  try {
    return createExclusive(path, content);
  } catch (err) {
    fail(`cannot create secret file ${path}: ${errno(err) ?? 'error'}`, err);
  }
}

function createExclusive(path: string, content: Uint8Array): boolean {
  const dir = dirname(path);
  ensurePrivateDir(dir);
  const tmp = `${path}.${process.pid}.${toBase64Url(randomBytes(6))}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    if (POSIX) fchmodSync(fd, 0o600);
    let off = 0;
    while (off < content.length) off += writeSync(fd, content, off, content.length - off);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    unlinkSync(tmp);
    throw err;
  }
  closeSync(fd);
  try {
    linkSync(tmp, path);
  } catch (err) {
    if (errno(err) === 'EEXIST') return false;
    throw err;
  } finally {
    unlinkSync(tmp);
  }
  if (POSIX) {
    const dfd = openSync(dir, constants.O_RDONLY);
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  }
  return true;
}

/**
 * Like {@link loadOrCreateSecretFile}, and also says whether the file was just created.
 * @throws LatchkeyError KEY_UNAVAILABLE as loadOrCreateSecretFile does.
 */
export function loadOrCreateSecret(path: string, bytes = 32): SecretFile {
  if (!Number.isInteger(bytes) || bytes < 16 || bytes > 4096) {
    throw new RangeError('secret size must be 16..4096 bytes');
  }
  if (!existsSync(path)) {
    const secret = randomBytes(bytes);
    // Another process may win the race to create it: then its bytes are the secret.
    if (createPrivateFile(path, secret)) return { secret, created: true };
  }
  return { secret: readPrivateFile(path, bytes), created: false };
}

/**
 * Reads the secret in `path`, or creates it with `bytes` random bytes (mode 0600; missing parent
 * directories are created 0700). Safe when several processes start at once: exactly one
 * creates it and all read the same bytes.
 * @throws LatchkeyError KEY_UNAVAILABLE when an existing file is readable by group or others,
 *   has the wrong size, is not a regular file, or cannot be read or created.
 * @throws RangeError when `bytes` is not 16..4096.
 */
export function loadOrCreateSecretFile(path: string, bytes = 32): Uint8Array {
  return loadOrCreateSecret(path, bytes).secret;
}

/** Creates a file 0600 (its directory 0700 when new) before a database is opened on it. */
export { preparePrivateFile } from '@latchkey/storage';
