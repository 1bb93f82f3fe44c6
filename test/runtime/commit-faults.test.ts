/**
 * Runtime: exact counters when commits fail (issues 9, 10 item 0, 8 item 6). Faults are injected at the
 * committer's store boundary — a wrapper around a REAL backend whose `updateAttrs` for chosen keys either
 * applies the write and then answers SLUICE_TIMEOUT (the write landed, the caller does not know), or
 * refuses it once with SLUICE_TIMEOUT. Before the counting rule of runtime/checkpoint.ts, both counted
 * their batch twice (+1 each), and records held behind a failed record of their key counted "4 for 2".
 */
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { expect, it } from 'vitest';
import { BindingError } from '../../bindings/errors.ts';
import { commitOneByOne } from '../../bindings/write-batch.ts';
import type { Backend, ObjectBinding } from '../../bindings/types.ts';
import { openBackend } from '../../runtime/backend-spec.ts';
import { openStateTable, readCounters, StateReader } from '../../runtime/state.ts';
import { Worker } from '../../runtime/worker.ts';
import type { WorkerOptions } from '../../runtime/worker-options.ts';
import { forEachBackend, tn, type BackendContext } from '../conformance/backends.ts';
import { until as poll } from '../support/poll.ts';

/** Polls every 50 ms (these tests race retries of a few hundred ms). */
const until = (what: string, pred: () => Promise<boolean>, ms = 30_000) => poll(what, pred, ms, 50);

const countFn = fileURLToPath(new URL('../fixtures/functions/rt-count.ts', import.meta.url));
const heldFn = fileURLToPath(new URL('../fixtures/functions/rt-held.ts', import.meta.url));

type Fault = 'apply-then-timeout' | 'refuse';

/** A backend whose object bindings fail `updateAttrs` once per planned key, as the plan says. */
function faulty(real: Backend, plan: Map<string, Fault>, injected: string[]): Backend {
  const wrapObjects = (o: ObjectBinding): ObjectBinding =>
    new Proxy(o, {
      get(t, p) {
        if (p === 'updateAttrs') {
          return async (...a: Parameters<ObjectBinding['updateAttrs']>) => {
            const fault = plan.get(a[0]);
            if (!fault) return t.updateAttrs(...a);
            plan.delete(a[0]);
            injected.push(`${fault}:${a[0]}`);
            if (fault === 'apply-then-timeout') await t.updateAttrs(...a);
            throw new BindingError('SLUICE_TIMEOUT', `injected: updateAttrs '${a[0]}' timed out`);
          };
        }
        const v = Reflect.get(t, p, t) as unknown;
        return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(t) : v;
      },
    });
  const wrapped: Backend = new Proxy(real, {
    get(t, p) {
      if (p === 'objects') return async (...a: Parameters<Backend['objects']>) => wrapObjects(await t.objects(...a));
      // The committer's batch write goes through the wrapped single-op methods, so the faults reach it.
      if (p === 'commitBatch') return (...a: Parameters<Backend['commitBatch']>) => commitOneByOne(wrapped, ...a);
      const v = Reflect.get(t, p, t) as unknown;
      return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(t) : v;
    },
  });
  return wrapped;
}

function logSink(lines: Record<string, unknown>[]) {
  return pino({ level: 'warn' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
}

async function drained(ctx: BackendContext, fn: string, shards: number): Promise<boolean> {
  const r = new StateReader(await openStateTable(ctx.backend));
  for (let s = 0; s < shards; s++) {
    const c = await r.checkpoint(fn, s);
    if (!c || c.pending.length > 0 || c.holds.length > 0) return false;
  }
  return true;
}

forEachBackend('runtime', (ctx) => {
  const t = (what: string) => tn('runtime', ctx, what);

  it(t('a write applied but answered with a timeout, and a refused write, each count once'), async () => {
    const bucket = ctx.uid('cf');
    const fn = ctx.uid('fn');
    await ctx.backend.createBucket(bucket, { shards: 2 });
    const o = await ctx.backend.objects(bucket);
    const keys = Array.from({ length: 20 }, (_, i) => `k${i}`);
    for (const k of keys) await o.put(k, 'x');
    const plan = new Map<string, Fault>([
      ['k3', 'apply-then-timeout'],
      ['k11', 'refuse'],
    ]);
    const injected: string[] = [];
    const logs: Record<string, unknown>[] = [];
    const options: WorkerOptions = {
      function: fn,
      module: countFn,
      trigger: { type: 'object', bucket },
      backend: ctx.childSpec(),
      threads: 0,
      batch: { maxRecords: 50, maxWait: '20ms' },
      retries: { maxAttempts: 5, initialBackoff: '20ms', maxBackoff: '50ms' },
      leaseTtl: '2s',
    };
    const w = await Worker.start(options, { log: logSink(logs), openBackend: async (spec) => faulty(await openBackend(spec), plan, injected) });
    try {
      await until('all handled and drained', async () => ((await readCounters(await openStateTable(ctx.backend), fn, 2)).seen ?? 0) >= 20 && (await drained(ctx, fn, 2)));
      await new Promise((r) => setTimeout(r, 300));
      expect(injected.sort()).toEqual(['apply-then-timeout:k3', 'refuse:k11']);
      // Exactly once in effect (the marker) AND in the counters.
      expect((await readCounters(await openStateTable(ctx.backend), fn, 2)).seen).toBe(20);
      for (const k of keys) expect((await o.getAttrs(k)).attrs.n, k).toBe(1);
      const failures = (await w.metrics.commitFailures.get()).values;
      expect(failures.find((v) => v.labels.code === 'SLUICE_TIMEOUT')?.value).toBe(2);
      const logged = logs.filter((l) => l.msg === 'commit of a record failed');
      expect(logged.map((l) => l.key).sort()).toEqual(['k11', 'k3']);
      expect(logged.every((l) => l.code === 'SLUICE_TIMEOUT' && typeof l.seq === 'number')).toBe(true);
      const events = (await w.metrics.events.get()).values;
      expect(events.find((v) => v.labels.outcome === 'duplicate')?.value).toBe(1);
    } finally {
      await w.stop();
    }
  });

  it(t('records held behind a failed record of their key count once (not "4 for 2")'), async () => {
    const stream = ctx.uid('held');
    const fn = ctx.uid('fn');
    const streams = ctx.backend.streams();
    await streams.create(stream, { shards: 1 });
    // Key 'a': the first record fails twice, the second runs fine in the same batch but must wait behind it.
    await streams.putRecords(stream, [
      { data: 'fail-twice', partitionKey: 'a' },
      { data: 'fine', partitionKey: 'a' },
      { data: 'fine', partitionKey: 'b' },
    ]);
    const options: WorkerOptions = {
      function: fn,
      module: heldFn,
      trigger: { type: 'stream', stream },
      backend: ctx.childSpec(),
      threads: 0,
      batch: { maxRecords: 50, maxWait: '50ms' },
      retries: { maxAttempts: 5, initialBackoff: '20ms', maxBackoff: '50ms' },
      leaseTtl: '2s',
    };
    const w = await Worker.start(options, { log: pino({ level: 'silent' }) });
    try {
      await until('drained', async () => ((await readCounters(await openStateTable(ctx.backend), fn, 1)).seen ?? 0) >= 3 && (await drained(ctx, fn, 1)));
      await new Promise((r) => setTimeout(r, 300));
      expect((await readCounters(await openStateTable(ctx.backend), fn, 1)).seen).toBe(3);
      const c = await new StateReader(await openStateTable(ctx.backend)).checkpoint(fn, 0);
      expect(c).toMatchObject({ pending: [], holds: [], handled: 3 });
    } finally {
      await w.stop();
    }
  });
});
