import { defineProject } from 'vitest/config';

export default defineProject({
  resolve: { conditions: ['@latchkey/source'] },
  test: { name: 'tests/integration', include: ['integration/**/*.test.ts'] },
});
