/**
 * Locates the held-out Wycheproof vectors in the shared folder next to the checkout
 * (`<repo root>/../shared/vectors`, see its SOURCES.md). They are read at run time and never
 * copied into the project.
 *
 * If the folder is missing, suites are skipped with a printed reason; under `CI=true` they fail
 * instead, so a CI run cannot pass without having checked the vectors.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'vitest';

function findRepoRoot(start: string): string {
  let dir = start;
  while (!existsSync(join(dir, 'pnpm-workspace.yaml'))) {
    const parent = dirname(dir);
    if (parent === dir) {
      throw new Error(`no pnpm-workspace.yaml above ${start}`);
    }
    dir = parent;
  }
  return dir;
}

export const REPO_ROOT = findRepoRoot(dirname(fileURLToPath(import.meta.url)));
export const SHARED_VECTORS = resolve(REPO_ROOT, '../shared/vectors');

/** Reads and parses one JSON file of the shared vectors folder. */
export function readSharedVectors<T>(file: string): T {
  return JSON.parse(readFileSync(join(SHARED_VECTORS, file), 'utf8')) as T;
}

/**
 * `describe` when the shared vectors exist; otherwise a skipped suite with a warning, or under
 * `CI=true` a suite with one failing test.
 */
export function describeWithSharedVectors(name: string, body: () => void): void {
  if (existsSync(SHARED_VECTORS)) {
    describe(name, body);
    return;
  }
  const reason = `shared test vectors not found at ${SHARED_VECTORS}`;
  if (process.env['CI'] === 'true') {
    describe(name, () => {
      it('has the shared test vectors (required when CI=true)', () => {
        throw new Error(`${reason}; CI=true, so this fails instead of skipping`);
      });
    });
    return;
  }
  console.warn(`[${name}] skipped: ${reason}`);
  describe.skip(name, () => {
    it('needs the shared test vectors', () => {});
  });
}

/** Wycheproof file layout shared by the schemas used here. */
export interface WycheproofFile<G> {
  algorithm: string;
  numberOfTests: number;
  testGroups: G[];
}

export interface WycheproofTest {
  tcId: number;
  comment: string;
  flags: string[];
  result: 'valid' | 'invalid' | 'acceptable';
}
