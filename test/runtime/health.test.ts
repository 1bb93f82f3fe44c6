/** Runtime: /metrics, /healthz and /readyz of a worker, and its lifecycle states. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalBackend } from '../../bindings/local/index.ts';
import { Worker } from '../../runtime/worker.ts';
import { resolveWorkerOptions } from '../../runtime/worker-options.ts';

const fixture = fileURLToPath(new URL('../fixtures/functions/rt-count.ts', import.meta.url));

describe('runtime - worker http and options', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-health-'));
    const b = await LocalBackend.open({ dir });
    await b.createBucket('files', { shards: 2 });
    const o = await b.objects('files');
    for (let i = 0; i < 10; i++) await o.put(`f${i}`, 'x');
    await o.put('poison-x', 'p');
    await b.close();
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('runtime - /healthz, /readyz and /metrics answer with the worker state and counts', async () => {
    const w = await Worker.start(
      { function: 'health', module: fixture, trigger: { type: 'object', bucket: 'files' }, backend: { kind: 'local', dir }, threads: 0, httpPort: 0, retries: { maxAttempts: 2, initialBackoff: '10ms' } },
      { log: pino({ level: 'silent' }) },
    );
    const base = `http://127.0.0.1:${w.httpPort}`;
    try {
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      const ready = await fetch(`${base}/readyz`);
      expect(ready.status).toBe(200);
      expect(((await ready.json()) as { status: { state: string } }).status.state).toBe('running');
      let text = '';
      const end = Date.now() + 10_000;
      while (Date.now() < end) {
        text = await (await fetch(`${base}/metrics`)).text();
        if (/sluice_events_total\{[^}]*outcome="ok"[^}]*\} 10\b/.test(text) && /sluice_dead_letters_total\{[^}]*\} 1\b/.test(text)) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(text).toMatch(/sluice_events_total\{[^}]*outcome="ok"[^}]*\} 10\b/);
      expect(text).toMatch(/sluice_dead_letters_total\{[^}]*\} 1\b/);
      expect(text).toMatch(/sluice_retries_total\{[^}]*\} 1\b/);
      expect(text).toContain('sluice_batch_records_bucket');
      expect(text).toContain('sluice_handler_seconds_bucket');
      expect(text).toContain('sluice_commit_seconds_bucket');
      expect(text).toMatch(/sluice_lag_records\{[^}]*shard="0"/);
      expect(text).toMatch(/sluice_owned_shards\{[^}]*\} 2\b/);
      expect((await fetch(`${base}/nope`)).status).toBe(404);
    } finally {
      expect(await w.stop()).toBe(true);
    }
    expect(w.state).toBe('stopped');
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
  });

  it('runtime - options: one error per rule, naming the path', () => {
    const base = { function: 'f', module: '/m.ts', trigger: { type: 'object' as const, bucket: 'b' }, backend: { kind: 'local' as const, dir: '/tmp/x' } };
    expect(() => resolveWorkerOptions({ ...base, function: 'Bad' })).toThrow(/function must be/);
    expect(() => resolveWorkerOptions({ ...base, module: '' })).toThrow(/module/);
    expect(() => resolveWorkerOptions({ ...base, batch: { maxRecords: 0 } })).toThrow(/batch.maxRecords must be an integer/);
    expect(() => resolveWorkerOptions({ ...base, batch: { maxWait: 'soon' } })).toThrow(/batch.maxWait/);
    expect(() => resolveWorkerOptions({ ...base, replicas: 2, ordinal: 2 })).toThrow(/ordinal must be an integer from 0 to 1/);
    expect(() => resolveWorkerOptions({ ...base, trigger: { type: 'object', bucket: 'b', events: ['created' as 'put'] } })).toThrow(/trigger.events/);
    expect(() => resolveWorkerOptions({ ...base, trigger: { type: 'ftp' } as never })).toThrow(/trigger.type/);
    expect(() => resolveWorkerOptions({ ...base, trigger: { type: 'http', path: 'no-slash' } as never })).toThrow(/trigger.path/);
    expect(() => resolveWorkerOptions({ ...base, trigger: { type: 'http', path: '/x', maxQueue: -1 } as never })).toThrow(/trigger.maxQueue/);
    expect(() => resolveWorkerOptions({ ...base, leaseTtl: '100ms' })).toThrow(/leaseTtl must be at least/);
    expect(() => resolveWorkerOptions({ ...base, retries: { maxAttempts: 0 } })).toThrow(/retries.maxAttempts/);
    const r = resolveWorkerOptions(base);
    expect(r.batch).toEqual({ maxRecords: 100, maxBytes: 1024 * 1024, maxWaitMs: 20 });
    expect(r.retries.deadLetterStream).toBe('dlq-f');
    expect(Object.isFrozen(r)).toBe(true);
  });
});
