import { defineProject } from 'vitest/config';

export default defineProject({
  resolve: { conditions: ['@latchkey/source'] },
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    name: 'apps/scanner',
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
  },
});
