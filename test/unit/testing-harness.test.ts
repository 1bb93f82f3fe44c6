import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { defineFunction, NonRetryableError, RetryAfterError, type BoundBinding, type EventRecord, type HandlerContext } from '../../functions/types.ts';
import { applyEffects, invokeHandler } from '../../functions/testing.ts';

describe('harness', () => {
  it('harness - captures attribute effects per record and counters per batch', async () => {
    const fn = defineFunction({
      handler(records, ctx) {
        for (const r of records) {
          r.setAttrs({ seen: true, len: r.size });
          r.removeAttrs('stale');
          r.update({ expr: 'ADD hits :one', values: { ':one': 1 } });
          ctx.count('records');
        }
        ctx.count('bytes', records.reduce((n, r) => n + r.size, 0));
      },
    });
    const r = await invokeHandler(fn, [
      { key: 'a', body: 'hello' },
      { key: 'b', body: new Uint8Array([1, 2, 3]) },
    ]);
    expect(r.error).toBeUndefined();
    expect(r.records).toEqual([
      { set: { seen: true, len: 5 }, remove: ['stale'], updates: [{ expr: 'ADD hits :one', values: { ':one': 1 } }] },
      { set: { seen: true, len: 3 }, remove: ['stale'], updates: [{ expr: 'ADD hits :one', values: { ':one': 1 } }] },
    ]);
    expect(r.byKey('b')).toBe(r.records[1]);
    expect(r.byKey('zzz')).toBeUndefined();
    expect(r.counters).toEqual({ records: 2, bytes: 8 });
    expect(r.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('harness - gives records their documented defaults and reads bodies by range', async () => {
    let seen: EventRecord[] = [];
    let context: HandlerContext | undefined;
    const fn = defineFunction({
      handler(records, ctx) {
        seen = records;
        context = ctx;
      },
    });
    const before = Date.now();
    await invokeHandler(fn, [{ key: 'a.txt', body: 'hello world' }, { key: 'b', type: 'delete' }, { key: 'c', body: 'abc', inline: false, shard: 3, seq: 40 }], { function: 'fx', shard: 2 });
    const [a, b, c] = seen;
    expect(a).toMatchObject({ key: 'a.txt', type: 'put', source: 'test', shard: 2, seq: 1, version: 1, size: 11, contentType: 'application/octet-stream', attrs: {}, headers: {}, attempt: 1 });
    expect(a?.etag).toBe(createHash('md5').update('hello world').digest('hex'));
    expect(a?.mtime.getTime()).toBeGreaterThanOrEqual(before);
    expect(new TextDecoder().decode(a?.body)).toBe('hello world');
    expect(new TextDecoder().decode(await a?.data({ start: 6 }))).toBe('world');
    expect(new TextDecoder().decode(await a?.data({ start: 0, end: 5 }))).toBe('hello');
    await expect(a?.data({ start: 50 })).rejects.toMatchObject({ code: 'SLUICE_RANGE_INVALID' });
    expect(await a?.text()).toBe('hello world');
    expect(b).toMatchObject({ key: 'b', type: 'delete', seq: 2, size: 0, etag: '', contentType: '', body: undefined });
    await expect(b?.data()).rejects.toMatchObject({ code: 'SLUICE_NOT_FOUND' });
    expect(c).toMatchObject({ shard: 3, seq: 40, version: 40, size: 3, body: undefined });
    expect(await c?.text()).toBe('abc');
    expect(context).toMatchObject({ function: 'fx', shard: 2, data: {} });
    expect(context?.batchId).toMatch(/^test-/);
    expect(context?.deadline).toBeGreaterThanOrEqual(before + 30_000);
    expect(context?.signal.aborted).toBe(false);
    expect(Object.isFrozen(a?.attrs)).toBe(true);
  });

  it('harness - a handler throw becomes the batch error, not a rejection', async () => {
    const fn = defineFunction({
      handler(records) {
        records[0]?.setAttrs({ partial: true });
        throw new Error('boom');
      },
    });
    const r = await invokeHandler(fn, [{ key: 'a' }]);
    expect(r.error).toMatchObject({ error: { name: 'Error', message: 'boom' }, nonRetryable: false });
    expect(r.error?.retryAfterMs).toBeUndefined();
    // Kept for debugging; the runtime commits nothing of a failed batch.
    expect(r.records[0]?.set).toEqual({ partial: true });
  });

  it('harness - RetryAfterError keeps retryAfterMs', async () => {
    const fn = defineFunction({
      async handler() {
        await Promise.resolve();
        throw new RetryAfterError('rate limited', '30s');
      },
    });
    const r = await invokeHandler(fn, [{ key: 'a' }]);
    expect(r.error).toMatchObject({ error: { name: 'RetryAfterError', message: 'rate limited' }, retryAfterMs: 30_000, nonRetryable: false });
  });

  it('harness - NonRetryableError is flagged non-retryable', async () => {
    const fn = defineFunction({
      handler() {
        throw new NonRetryableError('poison');
      },
    });
    const r = await invokeHandler(fn, [{ key: 'a' }]);
    expect(r.error).toMatchObject({ error: { name: 'NonRetryableError', message: 'poison' }, nonRetryable: true });
  });

  it('harness - invalid effects throw in the handler as in the runtime', async () => {
    const fn = defineFunction({
      handler(records, ctx) {
        ctx.count('bad name!');
        records[0]?.setAttrs({ ok: 1 });
      },
    });
    const r = await invokeHandler(fn, [{ key: 'a' }]);
    expect(r.error?.error.message).toMatch(/counter name/);
    const fn2 = defineFunction({
      handler(records) {
        records[0]?.setAttrs({ bad: undefined as unknown as string });
      },
    });
    expect((await invokeHandler(fn2, [{ key: 'a' }])).error?.error.code).toBe('SLUICE_VALUE_INVALID');
  });

  it('harness - record.fail is captured per record', async () => {
    const fn = defineFunction({
      handler(records) {
        records[0]?.fail('not yet', { retryAfter: '2s' });
        records[1]?.fail(new TypeError('bad payload'), { nonRetryable: true });
      },
    });
    const r = await invokeHandler(fn, [{ key: 'a' }, { key: 'b' }, { key: 'c' }]);
    expect(r.error).toBeUndefined();
    expect(r.records[0]?.failure).toMatchObject({ error: { message: 'not yet' }, retryAfterMs: 2000, nonRetryable: false });
    expect(r.records[1]?.failure).toMatchObject({ error: { name: 'TypeError', message: 'bad payload' }, nonRetryable: true });
    expect(r.records[2]?.failure).toBeUndefined();
  });

  it('harness - a timeout aborts ctx.signal and yields SLUICE_HANDLER_TIMEOUT; late effects are dropped', async () => {
    let signal: AbortSignal | undefined;
    let late: (() => void) | undefined;
    const fn = defineFunction({
      async handler(records, ctx) {
        signal = ctx.signal;
        records[0]?.setAttrs({ early: true });
        late = () => {
          records[0]?.setAttrs({ late: true });
          ctx.count('late');
        };
        await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
      },
    });
    const started = Date.now();
    const r = await invokeHandler(fn, [{ key: 'a' }], { timeoutMs: 50 });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(r.error).toMatchObject({ error: { code: 'SLUICE_HANDLER_TIMEOUT' }, nonRetryable: false });
    expect(signal?.aborted).toBe(true);
    expect((signal?.reason as { code?: string }).code).toBe('SLUICE_HANDLER_TIMEOUT');
    late?.();
    expect(r.records[0]?.set).toEqual({ early: true });
    expect(r.counters).toEqual({});
  });

  it('harness - applyEffects applies set, then remove, then each update in order', () => {
    const before = { keep: 'k', a: 1, gone: 'x', list: [1] };
    const after = applyEffects(before, {
      set: { a: 10, b: 'new' },
      remove: ['gone'],
      updates: ['SET c = a + 1', { expr: 'ADD c :n SET list = list_append(list, :l)', values: { ':n': 5, ':l': [2] } }, 'REMOVE b'],
    });
    expect(after).toEqual({ keep: 'k', a: 10, c: 16, list: [1, 2] });
    // The input is never mutated.
    expect(before).toEqual({ keep: 'k', a: 1, gone: 'x', list: [1] });
    // A failed record commits nothing.
    const failed = applyEffects(before, { set: { a: 2 }, remove: [], updates: [], failure: { error: { name: 'Error', code: 'SLUICE_INTERNAL', message: 'x' }, nonRetryable: false } });
    expect(failed).toEqual(before);
    expect(() => applyEffects({}, { set: {}, remove: [], updates: ['SET x = missing + 1'] })).toThrow(expect.objectContaining({ code: 'SLUICE_EXPRESSION_INVALID' }));
  });

  it('harness - applyEffects over the harness output gives the final attributes', async () => {
    const fn = defineFunction({
      handler(records) {
        for (const r of records) {
          r.setAttrs({ n: 1, tmp: true });
          r.removeAttrs('tmp', 'old');
          r.update('SET n = n + 1');
        }
      },
    });
    const r = await invokeHandler(fn, [{ key: 'a', attrs: { old: 'x', other: 'y' } }]);
    expect(applyEffects({ old: 'x', other: 'y' }, r.records[0]!)).toEqual({ n: 2, other: 'y' });
  });

  it('harness - captures ctx.log lines with function, shard and batch; silent by default', async () => {
    const fn = defineFunction({
      handler(records, ctx) {
        ctx.log.info({ n: records.length }, 'got batch');
        ctx.log.debug('details');
      },
    });
    const quiet = await invokeHandler(fn, [{ key: 'a' }]);
    expect(quiet.logs).toEqual([]);
    const r = await invokeHandler(fn, [{ key: 'a' }], { logLevel: 'info', function: 'f1', shard: 4 });
    expect(r.logs).toHaveLength(1);
    expect(r.logs[0]).toMatchObject({ level: 30, msg: 'got batch', n: 1, function: 'f1', shard: 4, batchId: expect.stringMatching(/^test-/) });
    const all = await invokeHandler(fn, [{ key: 'a' }], { logLevel: 'debug' });
    expect(all.logs.map((l) => (l as { msg?: string }).msg)).toEqual(['got batch', 'details']);
  });

  it('harness - runs init once before the handler with the same bindings, unless runInit is false', async () => {
    const binding = { name: 'stand-in' } as unknown as BoundBinding;
    const calls: string[] = [];
    const fn = defineFunction({
      init(ctx) {
        calls.push(`init:${ctx.function}:${ctx.data['store'] === binding}`);
      },
      handler(_records, ctx) {
        calls.push(`handler:${ctx.data['store'] === binding}`);
      },
    });
    await invokeHandler(fn, [{ key: 'a' }], { function: 'f', data: { store: binding } });
    expect(calls).toEqual(['init:f:true', 'handler:true']);
    calls.length = 0;
    await invokeHandler(fn, [{ key: 'a' }], { runInit: false });
    expect(calls).toEqual(['handler:false']);
    const failing = defineFunction({
      init() {
        throw new Error('no config');
      },
      handler() {
        calls.push('never');
      },
    });
    const r = await invokeHandler(failing, [{ key: 'a' }]);
    expect(r.error?.error.message).toBe('no config');
    expect(calls).toEqual(['handler:false']);
  });

  it('harness - rejects malformed synthetic input and options', async () => {
    const fn = defineFunction({ handler() {} });
    await expect(invokeHandler(fn, [{ key: 'a' }], { timeoutMs: 0 })).rejects.toMatchObject({ code: 'SLUICE_INVALID_ARGUMENT' });
    await expect(invokeHandler(fn, [{ key: 7 as unknown as string }])).rejects.toMatchObject({ code: 'SLUICE_INVALID_ARGUMENT' });
    await expect(invokeHandler(fn, [{ key: 'a', attrs: { x: undefined as unknown as string } }])).rejects.toMatchObject({ code: 'SLUICE_VALUE_INVALID' });
  });

  it('harness - handlers cannot change the test data through bodies', async () => {
    const body = new Uint8Array([1, 2, 3]);
    const fn = defineFunction({
      handler(records) {
        records[0]?.body?.fill(0);
      },
    });
    await invokeHandler(fn, [{ key: 'a', body }]);
    expect([...body]).toEqual([1, 2, 3]);
  });
});
