/**
 * A file only its owner may read, made before a database or secret is written to it (no driver
 * needed: the key service's secret files use it too).
 */
import { chmodSync, closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Creates `path` 0600 before SQLite does (its -wal and -shm files inherit that mode), and its
 * directory 0700 when missing; a file left looser by an older version is tightened.
 */
export function preparePrivateFile(path: string): void {
  const dir = dirname(path);
  const first = mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (first !== undefined && process.platform !== 'win32') chmodSync(dir, 0o700);
  closeSync(openSync(path, 'a', 0o600));
  if (process.platform !== 'win32' && (statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
}
