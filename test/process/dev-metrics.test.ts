/**
 * `/metrics` under `sluice dev`, with real processes: one Prometheus page for the whole local platform
 * — the controller's series (desired/ready replicas, lag per function, reconcile durations and errors,
 * scale decisions) and every worker's (the runtime's series, the handler's own counters as
 * `sluice_function_counter_total{function,name}`, process metrics), told apart by a `worker` label.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalBackend } from '../../bindings/local/index.ts';
import { run, startDev, until, type Dev } from '../support/sluice-process.ts';

const work = mkdtempSync(join(tmpdir(), 'sluice-metrics-'));
const data = join(work, 'data');
let dev: Dev | undefined;

afterAll(async () => {
  await dev?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe('dev metrics', () => {
  it('metrics - sluice dev serves the controller and worker series, user counters included', async () => {
    const fn = join(work, 'functions', 'counter');
    mkdirSync(fn, { recursive: true });
    const handler = fileURLToPath(new URL('../fixtures/functions/rt-count.ts', import.meta.url));
    writeFileSync(join(fn, 'function.yaml'), ['apiVersion: sluice.dev/v1', 'kind: Function', 'metadata:', '  name: counter', 'spec:', `  handler: ${handler}`, '  triggers:', '    - object:', '        bucket: uploads', '  batch: {maxWait: 5ms}', '  scaling: {minReplicas: 1, maxReplicas: 1}', ''].join('\n'));
    dev = await startDev({ data, cwd: work, extra: ['--functions', join(work, 'functions'), '--metrics', '127.0.0.1:0'] });
    const url = (await dev.waitFor(/metrics on (http:\/\/127\.0\.0\.1:\d+\/metrics)/))[1]!;
    await dev.waitFor(/deployed counter \(revision 1\)/);

    const b = await LocalBackend.open({ dir: data });
    try {
      const o = await b.objects('uploads');
      for (const k of ['a', 'b', 'c']) await o.put(k, new TextEncoder().encode(k));
    } finally {
      await b.close();
    }
    const text = await until(
      'the user counter seen = 3 on the page',
      async () => {
        const r = await fetch(url);
        const t = await r.text();
        return /sluice_function_counter_total\{[^}]*name="seen"[^}]*\} 3\b/.test(t) ? t : undefined;
      },
      120_000,
      300,
    );
    const line = text.split('\n').find((l) => l.startsWith('sluice_function_counter_total{'))!;
    expect(line).toContain('function="counter"');
    expect(line).toContain('worker="0"');
    expect(text).toMatch(/sluice_events_total\{[^}]*outcome="ok"[^}]*worker="0"[^}]*\} 3\b/);
    expect(text).toMatch(/^sluice_controller_desired_replicas\{function="counter"\} 1$/m);
    expect(text).toMatch(/^sluice_controller_ready_replicas\{function="counter"\} 1$/m);
    expect(text).toMatch(/^sluice_controller_lag_records\{function="counter"\} \d+$/m);
    expect(text).toMatch(/^sluice_controller_reconcile_seconds_count \d+$/m);
    expect(text).toContain('# TYPE sluice_controller_scale_decisions_total counter');
    expect(text).toContain('# TYPE sluice_controller_reconcile_errors_total counter');
    const restarts = /^sluice_function_worker_restarts\{function="counter"\} (\d+)$/m.exec(text);
    expect(restarts, 'the restarts gauge').not.toBeNull();
    if (restarts![1] !== '0') {
      // A worker crashed: say why (its logs), rather than only that it did.
      const logs = await run(['--data', data, '--server', dev.server, 'logs', 'counter']);
      expect.fail(`worker restarted ${restarts![1]} times; logs:\n${logs.stdout.split('\n').filter((l) => !/ info  /.test(l)).join('\n').slice(-3000)}`);
    }
    // Process metrics of the controller and of the worker.
    expect(text).toMatch(/^process_cpu_seconds_total \d/m);
    expect(text).toMatch(/^process_cpu_seconds_total\{[^}]*worker="0"[^}]*\} \d/m);
    // Exactly one TYPE line per family: the page parses in Prometheus.
    const types = text.split('\n').filter((l) => l.startsWith('# TYPE '));
    expect(new Set(types).size).toBe(types.length);
  }, 300_000);
});
