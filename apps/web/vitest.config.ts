import { defineProject } from 'vitest/config';

export default defineProject({
  resolve: { conditions: ['@latchkey/source'] },
  test: {
    name: 'apps/web',
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
