import { join } from 'node:path';
import { keyManagerContract } from '../contract.ts';
import { dbFiles, tempDir } from '../_helpers.ts';
import { openInternalKeyManager } from '../../src/wrappers/internal.ts';

keyManagerContract('internal', async () => {
  const { dir, cleanup } = tempDir();
  const path = join(dir, 'keys', 'keys.db');
  const masterKey = new Uint8Array(32).fill(3);
  return {
    backend: 'internal',
    open: () => openInternalKeyManager({ path, masterKey }),
    files: () => dbFiles(path),
    teardown: async () => cleanup(),
  };
});
