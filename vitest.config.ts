import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'bindings/**/*.test.ts', 'runtime/**/*.test.ts', 'functions/**/*.test.ts', 'controller/**/*.test.ts'],
    exclude: ['test/bench/**', 'node_modules/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Two cores: integration suites start servers and child processes; keep file parallelism modest.
    maxWorkers: 2,
    pool: 'forks',
    // test/support/run-watchdog.ts: failed tests at once, slow files with the process tree, and a bound on
    // the whole run (a stuck run fails with its cause in the log instead of running into CI's limit).
    reporters: ['default', './test/support/run-watchdog.ts'],
  },
});
