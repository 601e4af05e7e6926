/** Both HTTP adapters pass the KeyManager contract against the reference key manager. */
import { join } from 'node:path';
import { keyManagerContract } from '../../../packages/keys/test/contract.ts';
import { openHttpKeyManager, openHttpKeyStoreManager } from '@latchkey/keys';
import { clientOptions, dbFiles, withKms } from './_setup.ts';

keyManagerContract('http (wrap model, reference KMS)', async () => {
  const env = await withKms();
  const path = join(env.dir, 'keys', 'keys.db');
  return {
    backend: 'http',
    open: () => openHttpKeyManager({ ...clientOptions(env.kms.url), keyId: 'latchkey-kek', path }),
    files: () => [...dbFiles(path), ...dbFiles(env.kmsPath)],
    teardown: env.cleanup,
  };
});

keyManagerContract('http (wrap model with generate and a cache)', async () => {
  const env = await withKms();
  const path = join(env.dir, 'keys', 'keys.db');
  return {
    backend: 'http',
    open: () =>
      openHttpKeyManager({
        ...clientOptions(env.kms.url),
        keyId: 'k2',
        path,
        useGenerate: true,
        cacheTtlMs: 60_000,
      }),
    files: () => [...dbFiles(path), ...dbFiles(env.kmsPath)],
    teardown: env.cleanup,
  };
});

keyManagerContract('http (key-store model, reference KMS)', async () => {
  const env = await withKms();
  return {
    backend: 'http-store',
    open: async () => openHttpKeyStoreManager(clientOptions(env.kms.url)),
    files: () => dbFiles(env.kmsPath),
    teardown: env.cleanup,
  };
});
