import { defineConfig } from 'vitest/config';

// End-to-end tests start real redis-server processes and run the real script, so they get generous time.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 30_000,
  },
});
