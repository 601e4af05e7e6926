import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: { conditions: ['@latchkey/source'] },
  ssr: { resolve: { conditions: ['@latchkey/source'] } },
  test: {
    projects: ['packages/*', 'apps/*', 'tests'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
