/** Shared test helpers: temp directories and raw-byte scans of database files. */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LatchkeyError } from '@latchkey/protocol';

export function tempDir(prefix = 'latchkey-keys-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The error code a promise rejects with, or 'OK'. */
export async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    if (LatchkeyError.is(err)) return err.code;
    throw err;
  }
  return 'OK';
}

/** Every existing file of a SQLite database: main file, -wal, -shm. */
export function dbFiles(path: string): string[] {
  return [path, `${path}-wal`, `${path}-shm`].filter((p) => existsSync(p));
}

/** Whether `needle` occurs anywhere in the raw bytes of `files`. */
export function bytesContain(files: string[], needle: Uint8Array): string | undefined {
  const n = Buffer.from(needle);
  for (const f of files) if (readFileSync(f).includes(n)) return f;
  return undefined;
}
