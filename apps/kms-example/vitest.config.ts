import { defineProject } from 'vitest/config';

export default defineProject({
  resolve: { conditions: ['@latchkey/source'] },
  test: { name: 'apps/kms-example', include: ['src/**/*.test.ts', 'test/**/*.test.ts'] },
});
