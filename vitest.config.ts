import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Real sockets and timers: keep files apart, and keep the 2-core machine from thrashing.
    pool: 'forks',
    maxWorkers: 2,
    typecheck: {
      enabled: true,
      include: ['packages/*/test/**/*.test-d.ts', 'test/**/*.test-d.ts'],
      tsconfig: './tsconfig.json',
    },
  },
});
