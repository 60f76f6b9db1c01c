import { existsSync } from 'node:fs';
import { configDefaults, defineConfig } from 'vitest/config';

// Suites that start processes or worker threads (forked apps, SIGTERM, the examples, CommonJS, a
// process's lifetime, 10,000 clients): the slowest to start, so `unit` and `integration` stay quick
// without them. `pnpm test` runs every project.
const slow = [
  'packages/core/test/lifetime.test.ts',
  'test/adapters/cjs.test.ts',
  'test/adapters/examples.test.ts',
  'test/faults/app-faults.test.ts',
  'test/faults/sigterm.test.ts',
];
// A moved or renamed slow suite would silently join a fast project: say so instead.
for (const file of slow) {
  if (!existsSync(new URL(file, import.meta.url)))
    throw new Error(`vitest.config.ts: slow suite ${file} does not exist`);
}

// Reserved for suites other branches add as projects of their own, with `pnpm test:<name>` scripts:
// `crash` (SQLite, kill -9) and `fleet` (PostgreSQL). `pnpm test` runs them with everything else;
// CI runs them once, on Node 24, and names only unit, integration and slow on Node 22 and 26.
const crash = [
  'test/crash/**/*.test.ts',
  'packages/sqlite/test/kill.test.ts',
  'packages/sqlite/test/leases.test.ts',
  'packages/sqlite/test/attempts.test.ts',
];
const fleet = ['test/fleet/**/*.test.ts', 'packages/postgres/test/**/*.test.ts'];
const reserved = [...crash, ...fleet];

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Real sockets and timers: keep files apart, and keep the 2-core machine from thrashing.
    pool: 'forks',
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['packages/*/test/**/*.test.ts', 'test/platform/**/*.test.ts'],
          exclude: [...configDefaults.exclude, ...slow, ...reserved],
        },
      },
      {
        // Type tests (`*.test-d.ts`, checked by tsc against the built declarations): a project of
        // their own, as tsc alone takes longer than the whole unit project.
        extends: true,
        test: {
          name: 'types',
          typecheck: {
            enabled: true,
            only: true,
            include: ['packages/*/test/**/*.test-d.ts', 'test/**/*.test-d.ts'],
            tsconfig: './tsconfig.json',
          },
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/**/*.test.ts'],
          exclude: [...configDefaults.exclude, ...slow, ...reserved, 'test/platform/**'],
        },
      },
      {
        extends: true,
        test: { name: 'slow', include: slow },
      },
      {
        // SQLite outbox processes killed with SIGKILL: run once, on one Node line.
        extends: true,
        test: { name: 'crash', include: crash },
      },
      {
        // PostgreSQL (pg-boss) backend, workers and fleets: run once, on one Node line.
        extends: true,
        // One file at a time: the fleet proof restarts PostgreSQL, and no other file may be running then.
        test: { name: 'fleet', include: fleet, fileParallelism: false },
      },
    ],
  },
});
