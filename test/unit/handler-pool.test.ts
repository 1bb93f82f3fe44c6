/**
 * The handler pool end to end: batches written into shared-memory slots, handled on piscina threads
 * that read them in place, effects read back from the slots. Functions under test/fixtures/functions.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BindingError } from '../../bindings/errors.ts';
import { LocalBackend } from '../../bindings/local/index.ts';
import type { Attrs } from '../../bindings/types.ts';
import type { BatchInput, BatchRecordInput } from '../../runtime/batch-types.ts';
import { SlotPool } from '../../runtime/handoff/slots.ts';
import { HandlerPool, resolveHandlerPoolOptions, type HandlerPoolOptions } from '../../runtime/threads/handler-pool.ts';
import pino from 'pino';
import { InlineRunner } from '../../runtime/runner.ts';
import { resolveWorkerOptions } from '../../runtime/worker-options.ts';

const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/functions/${name}.ts`, import.meta.url));

let dir: string;
const pools: HandlerPool[] = [];

async function open(name: string, over: Partial<HandlerPoolOptions> = {}): Promise<HandlerPool> {
  const p = await HandlerPool.open({ module: fixture(name), function: name, backend: { kind: 'local', dir }, logLevel: 'silent', ...over });
  pools.push(p);
  return p;
}

let seq = 0;
function rec(key: string, over: Partial<BatchRecordInput> = {}): BatchRecordInput {
  seq++;
  return {
    key,
    type: 'put',
    source: 'photos',
    shard: 2,
    seq,
    version: 7,
    size: 11,
    etag: '0123456789abcdef0123456789abcdef',
    mtimeMs: 1_700_000_000_000 + seq,
    contentType: 'text/plain',
    attrs: {},
    headers: {},
    attempt: 1,
    ...over,
  };
}

function batch(records: BatchRecordInput[], over: Partial<BatchInput> = {}): BatchInput {
  return { function: 'f', source: 'photos', shard: 2, batchId: `b-${++seq}`, deadlineMs: Date.now() + 10_000, records, ...over };
}

async function rejection(p: Promise<unknown>): Promise<BindingError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(BindingError);
  return e as BindingError;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-pool-'));
  const be = await LocalBackend.open({ dir });
  await be.createBucket('photos');
  await be.createTable('meta');
  await be.streams().create('events');
  await be.streams().create('other');
  const photos = await be.objects('photos');
  await photos.put('hello.txt', 'hello wörld, from the bucket');
  await photos.put('ключ/日本.txt', 'ünïcode body');
  await be.close();
});

afterAll(async () => {
  await Promise.all(pools.map((p) => p.close({ graceMs: 1000 })));
  rmSync(dir, { recursive: true, force: true });
});

describe('handoff - handler pool', () => {
  it('handoff - effects come back: setAttrs, removeAttrs, update, fail, counters', async () => {
    const pool = await open('echo');
    const b = batch([rec('a.txt', { attrs: { w: 1 } }), rec('remove:b'), rec('update:c'), rec('fail:d'), rec('dead:e'), rec('quiet:f')]);
    const fx = await pool.run(b);
    expect(fx.error).toBeUndefined();
    expect(fx.records).toHaveLength(6);
    expect(fx.records[0]!.set.w).toBe(1);
    expect(fx.records[1]).toEqual({ set: {}, remove: ['old', 'stale'], updates: [] });
    expect(fx.records[2]).toEqual({ set: {}, remove: [], updates: [{ expr: 'ADD hits :one', values: { ':one': 1 } }] });
    expect(fx.records[3]!.failure).toMatchObject({ error: { name: 'Error', message: 'cannot handle fail:d' }, retryAfterMs: 2000, nonRetryable: false });
    expect(fx.records[4]!.failure).toMatchObject({ error: { message: 'poison' }, nonRetryable: true });
    expect(fx.records[5]).toEqual({ set: {}, remove: [], updates: [] });
    expect(fx.counters).toEqual({ records: 6, bytes: 66 });
    expect(pool.occupancy).toEqual({ inUse: 0, slots: 2 });
  });

  it('handoff - every record field, unicode keys and attrs of every type survive the round trip', async () => {
    const pool = await open('echo');
    const attrs: Attrs = {
      s: 'text ✓',
      empty: '',
      n: -12.5,
      t: true,
      f: false,
      z: null,
      bytes: new Uint8Array([0, 255, 7]),
      when: new Date(1_700_000_123_456),
      list: [1, 'två', [null, false]],
      map: { 'ключ': { deep: new Uint8Array([1]) }, d: new Date(5) },
      '名前 🎉': 'värde',
    };
    const records = [
      rec('ключ/日本語/😀 file.txt', { attrs, headers: { 'x-ü': 'ö 🎉' }, body: new TextEncoder().encode('inline ünï'), type: 'attrs', source: 'events', seq: 2 ** 53 - 1, version: 2 ** 40, size: 10 }),
      rec('plain', { type: 'delete', etag: '', contentType: '', attempt: 3 }),
    ];
    const b = batch(records, { shard: 5, batchId: 'batch-ü' });
    const fx = await pool.run(b);
    const [e0, e1] = fx.records;
    const { echo, ctx, ...copied } = e0!.set as Attrs & { echo: Attrs; ctx: Attrs };
    expect(copied).toEqual(attrs);
    expect(echo).toEqual({
      key: 'ключ/日本語/😀 file.txt',
      type: 'attrs',
      source: 'events',
      shard: 2,
      seq: 2 ** 53 - 1,
      version: 2 ** 40,
      size: 10,
      etag: '0123456789abcdef0123456789abcdef',
      mtime: new Date(records[0]!.mtimeMs),
      contentType: 'text/plain',
      attempt: 1,
      headers: { 'x-ü': 'ö 🎉' },
      body: new TextEncoder().encode('inline ünï'),
    });
    expect(ctx).toMatchObject({ function: 'echo', shard: 5, batchId: 'batch-ü', deadline: b.deadlineMs, aborted: false });
    expect((e1!.set as { echo: Attrs }).echo).toMatchObject({ key: 'plain', type: 'delete', source: 'photos', etag: '', contentType: '', attempt: 3, body: null });
  });

  it('handoff - setAttrs on a stream record fails the call on a handler thread (SLUICE_INVALID_ARGUMENT), not silently at commit', async () => {
    const pool = await open('echo');
    const fx = await pool.run(batch([rec('evt', { type: 'record', source: 'events' })]));
    expect(fx.error).toMatchObject({ error: { code: 'SLUICE_INVALID_ARGUMENT' } });
    expect(fx.error?.error.message).toMatch(/stream record has no object/);
  });

  it('handoff - a 0-record batch runs and returns empty effects', async () => {
    const pool = await open('echo');
    expect(await pool.run(batch([]))).toEqual({ records: [], counters: {} });
  });

  it('handoff - a throw becomes BatchEffects.error with name and code; RetryAfterError keeps retryAfterMs, NonRetryableError is flagged', async () => {
    const pool = await open('misbehave');
    const retry = await pool.run(batch([rec('retry')]));
    expect(retry.error).toMatchObject({ error: { name: 'RetryAfterError', message: 'rate limited' }, retryAfterMs: 5000, nonRetryable: false });
    expect(retry.records).toHaveLength(1);
    const fatal = await pool.run(batch([rec('fatal')]));
    expect(fatal.error).toMatchObject({ error: { name: 'NonRetryableError', message: 'bad input', cause: { message: 'root cause' } }, nonRetryable: true });
    expect(fatal.error?.retryAfterMs).toBeUndefined();
    const coded = await pool.run(batch([rec('coded')]));
    expect(coded.error).toMatchObject({ error: { name: 'BindingError', code: 'SLUICE_NOT_FOUND', message: 'gone' }, nonRetryable: false });
    expect(coded.error?.error.stack).toContain('misbehave.ts');
    const str = await pool.run(batch([rec('string')]));
    expect(str.error).toMatchObject({ error: { message: 'a bare string' } });
  });

  it('handoff - a handler past timeoutMs rejects with SLUICE_HANDLER_TIMEOUT and the next batch runs on a fresh thread', async () => {
    const pool = await open('misbehave', { threads: 1, timeoutMs: 400 });
    const first = (await pool.run(batch([rec('who')]))).records[0]!.set;
    const before = first.thread;
    // ctx.deadline is the earlier of the batch's deadline (10 s away) and the pool's timeout.
    expect(first.deadlineInMs).toBeLessThanOrEqual(400);
    expect(first.deadlineInMs).toBeGreaterThan(0);
    const t0 = Date.now();
    const err = await rejection(pool.run(batch([rec('spin')])));
    expect(err.code).toBe('SLUICE_HANDLER_TIMEOUT');
    expect(Date.now() - t0).toBeLessThan(5000);
    const err2 = await rejection(pool.run(batch([rec('sleep')])));
    expect(err2.code).toBe('SLUICE_HANDLER_TIMEOUT');
    const after = await pool.run(batch([rec('who')]));
    expect(after.records[0]!.set.thread).not.toBe(before);
    expect(pool.occupancy.inUse).toBe(0);
  });

  it('handoff - a thread that dies rejects with SLUICE_HANDLER_FAILED, and the pool goes on', async () => {
    const pool = await open('misbehave', { threads: 1 });
    const err = await rejection(pool.run(batch([rec('exit')])));
    expect(err.code).toBe('SLUICE_HANDLER_FAILED');
    expect((await pool.run(batch([rec('who')]))).records[0]!.set.thread).toEqual(expect.any(Number));
    expect(pool.occupancy.inUse).toBe(0);
  });

  it('handoff - a record kept past its batch refuses to be read', async () => {
    const pool = await open('misbehave', { threads: 1 });
    await pool.run(batch([rec('keep')]));
    await new Promise((r) => setTimeout(r, 50));
    const fx = await pool.run(batch([rec('who')]));
    expect(fx.records[0]!.set.kept).toMatch(/used after its batch completed/);
  });

  it('handoff - a batch too big for its slot rejects with SLUICE_SLOT_OVERFLOW; effects too big fail the batch with it', async () => {
    const pool = await open('misbehave', { threads: 1, slotBytes: 64 * 1024 });
    const big = batch([rec('x', { body: new Uint8Array(80 * 1024) })]);
    expect((await rejection(pool.run(big))).code).toBe('SLUICE_SLOT_OVERFLOW');
    expect(pool.occupancy.inUse).toBe(0);
    const fx = await pool.run(batch([rec('huge'), rec('b'), rec('c')]));
    expect(fx.error?.error.code).toBe('SLUICE_SLOT_OVERFLOW');
    expect(fx.records).toEqual([0, 1, 2].map(() => ({ set: {}, remove: [], updates: [] })));
  });

  it('handoff - bindings: a read binding refuses writes with SLUICE_ACCESS_DENIED naming binding and method; undeclared names are absent', async () => {
    const pool = await open('bindings', {
      bindings: [
        { name: 'photos', kind: 'object', resource: 'photos', access: 'read' },
        { name: 'meta', kind: 'kv', resource: 'meta', access: 'read-write' },
        { name: 'events', kind: 'stream', resource: 'events', access: 'read' },
        { name: 'files', kind: 'file', resource: 'fx', access: 'read' },
      ],
    });
    const fx = await pool.run(batch([rec('probe')]));
    expect(fx.error).toBeUndefined();
    const set = fx.records[0]!.set as Record<string, unknown>;
    expect(set.names).toEqual(['events', 'files', 'meta', 'photos']);
    expect(set.secretAbsent).toBe(true);
    expect(set.photos).toEqual({
      get: 'ok',
      put: 'SLUICE_ACCESS_DENIED',
      delete: 'SLUICE_ACCESS_DENIED',
      updateAttrs: 'SLUICE_ACCESS_DENIED',
      message: "binding 'photos' (object 'photos') is read-only: put refused",
    });
    expect(set.meta).toEqual({ putItem: 'ok', updateItem: 'ok', getItem: 'ok', deleteItem: 'ok' });
    expect(set.events).toEqual({ info: 'ok', putRecords: 'SLUICE_ACCESS_DENIED', create: 'SLUICE_ACCESS_DENIED', otherInfo: 'SLUICE_ACCESS_DENIED' });
    expect(set.files).toEqual({
      writeFile: 'SLUICE_ACCESS_DENIED',
      mkdir: 'SLUICE_ACCESS_DENIED',
      rename: 'SLUICE_ACCESS_DENIED',
      remove: 'SLUICE_ACCESS_DENIED',
      openWrite: 'SLUICE_ACCESS_DENIED',
      readdir: 'ok',
    });
  });

  it('handoff - data() reads a body not prefetched through the local backend, lazily; inline bodies come from the batch', async () => {
    // No bindings declared: the read of the record's own bucket is internal and allowed.
    const pool = await open('bindings');
    const fx = await pool.run(
      batch([rec('hello.txt', { size: 28 }), rec('ключ/日本.txt'), rec('inline.txt', { body: new TextEncoder().encode('inline body ✓') })]),
    );
    expect(fx.error).toBeUndefined();
    expect(fx.records.map((r) => r.set)).toEqual([
      { text: 'hello wörld, from the bucket', head: 'hello', inline: false },
      { text: 'ünïcode body', head: 'ünï', inline: false },
      { text: 'inline body ✓', head: 'inlin', inline: true },
    ]);
  });

  it('handoff - secrets reach init and ctx.secrets on the handler threads (frozen); none given is {}', async () => {
    const pool = await open('secrets-echo', { secrets: { 'api-key': 'k-123', other: 'v' } });
    expect((await pool.run(batch([rec('s1')]))).records[0]!.set).toEqual({ init: { 'api-key': 'k-123', other: 'v' }, ctx: { 'api-key': 'k-123', other: 'v' }, frozen: true });
    const none = await open('secrets-echo');
    expect((await none.run(batch([rec('s2')]))).records[0]!.set).toEqual({ init: {}, ctx: {}, frozen: true });
  });

  it('handoff - secrets reach init and ctx.secrets on the inline runner (threads: 0) too', async () => {
    const be = await LocalBackend.open({ dir });
    try {
      const base = { function: 'f', module: fixture('secrets-echo'), trigger: { type: 'object' as const, bucket: 'photos' }, backend: { kind: 'local' as const, dir }, threads: 0 };
      const o = resolveWorkerOptions({ ...base, secrets: { k: 'v' } });
      const runner = await InlineRunner.open(o, be, pino({ level: 'silent' }));
      expect((await runner.run(batch([rec('s3')]))).records[0]!.set).toEqual({ init: { k: 'v' }, ctx: { k: 'v' }, frozen: true });
      expect(() => resolveWorkerOptions({ ...base, secrets: { k: 1 as unknown as string } })).toThrow(/secrets\.k must be a string/);
    } finally {
      await be.close();
    }
  });

  it('handoff - init runs once per thread', async () => {
    const pool = await open('init-once', { threads: 2, slots: 4 });
    const runs = await Promise.all(Array.from({ length: 20 }, (_, i) => pool.run(batch([rec(`k${i}`)]))));
    const seen = runs.map((r) => r.records[0]!.set as { inits: number; thread: number });
    expect(seen.every((s) => s.inits === 1)).toBe(true);
    expect(new Set(seen.map((s) => s.thread)).size).toBeGreaterThanOrEqual(1);
  });

  it('handoff - more batches than slots wait for a slot; occupancy reports it; close waits for in-flight batches', async () => {
    const pool = await open('echo', { threads: 2, slots: 2 });
    const runs = Array.from({ length: 10 }, (_, i) => pool.run(batch([rec(`k${i}`)])));
    expect(pool.occupancy.inUse).toBeLessThanOrEqual(2);
    const closing = pool.close();
    const all = await Promise.all(runs);
    await closing;
    expect(all.map((f) => f.counters.records)).toEqual(Array(10).fill(1));
    expect((await rejection(pool.run(batch([rec('late')])))).code).toBe('SLUICE_ABORTED');
  });

  it('handoff - run honours its AbortSignal (SLUICE_ABORTED) and releases the slot', async () => {
    const pool = await open('misbehave', { threads: 1, slots: 1 });
    const ac = new AbortController();
    const p = pool.run(batch([rec('sleep')]), { signal: ac.signal });
    setTimeout(() => ac.abort(), 100);
    expect((await rejection(p)).code).toBe('SLUICE_ABORTED');
    expect((await pool.run(batch([rec('who')]))).records).toHaveLength(1);
  });

  it('handoff - a function module that does not load fails open() with SLUICE_HANDLER_FAILED', async () => {
    const err = await rejection(HandlerPool.open({ module: fixture('does-not-exist'), function: 'nope', backend: { kind: 'local', dir }, logLevel: 'silent' }));
    expect(err.code).toBe('SLUICE_HANDLER_FAILED');
    expect(err.message).toMatch(/does-not-exist/);
  });

  it('handoff - options are validated at open, naming the option', () => {
    const base = { module: fixture('echo'), function: 'f', backend: { kind: 'local' as const, dir: '/tmp/x' } };
    expect(() => resolveHandlerPoolOptions({ ...base, module: 'relative.ts' })).toThrow(/handlerPool.module must be an absolute path/);
    expect(() => resolveHandlerPoolOptions({ ...base, threads: 0 })).toThrow(/handlerPool.threads/);
    expect(() => resolveHandlerPoolOptions({ ...base, slotBytes: 1000 })).toThrow(/handlerPool.slotBytes/);
    expect(() => resolveHandlerPoolOptions({ ...base, timeoutMs: -1 })).toThrow(/handlerPool.timeoutMs/);
    expect(() => resolveHandlerPoolOptions({ ...base, logLevel: 'loud' })).toThrow(/handlerPool.logLevel/);
    expect(() => resolveHandlerPoolOptions({ ...base, bindings: [{ name: 'x', kind: 'object', resource: 'b', access: 'write' as 'read' }] })).toThrow(/bindings\[0\].access/);
    const r = resolveHandlerPoolOptions({ ...base, threads: 3 });
    expect(() => resolveHandlerPoolOptions({ ...base, dispatch: 'queue' as 'ring' })).toThrow(/handlerPool.dispatch/);
    expect(r).toMatchObject({ threads: 3, slots: 6, slotBytes: 8 * 1024 * 1024, timeoutMs: 30_000, bindings: [], logLevel: 'info', concurrentTasksPerThread: 1, dispatch: 'ring' });
    expect(Object.isFrozen(r)).toBe(true);
  });
});

describe.each(['task', 'ring'] as const)("handoff - handler pool, dispatch '%s'", (dispatch) => {
  it('handoff - timeouts replace the thread, a crash fails its batch, an abort releases the slot; the pool goes on', async () => {
    const pool = await open('misbehave', { threads: 1, slots: 2, timeoutMs: 400, dispatch });
    const before = (await pool.run(batch([rec('who')]))).records[0]!.set.thread;
    const spin = pool.run(batch([rec('spin')]));
    const queued = pool.run(batch([rec('who')])); // waits behind the spinner, then runs on the fresh thread
    expect((await rejection(spin)).code).toBe('SLUICE_HANDLER_TIMEOUT');
    expect((await queued).records[0]!.set.thread).not.toBe(before);
    expect((await rejection(pool.run(batch([rec('exit')])))).code).toBe('SLUICE_HANDLER_FAILED');
    const ac = new AbortController();
    const p = pool.run(batch([rec('sleep')]), { signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    expect((await rejection(p)).code).toBe('SLUICE_ABORTED');
    const many = await Promise.all(Array.from({ length: 12 }, (_, i) => pool.run(batch([rec(`k${i}`), rec('who')]))));
    expect(many.every((f) => f.records.length === 2 && f.error === undefined)).toBe(true);
    expect(pool.occupancy.inUse).toBe(0);
  });

  it('handoff - several batches per thread at once', async () => {
    const pool = await open('echo', { threads: 2, slots: 8, concurrentTasksPerThread: 2, dispatch });
    const runs = await Promise.all(Array.from({ length: 40 }, (_, i) => pool.run(batch([rec(`k${i}`), rec(`j${i}`)]))));
    expect(runs.map((f) => f.counters.records)).toEqual(Array(40).fill(2));
    await pool.close();
    expect(pool.occupancy.inUse).toBe(0);
  });
});

describe('handoff - slot pool', () => {
  it('handoff - acquire waits when every slot is busy, FIFO, bounded by its timeout and its AbortSignal', async () => {
    const pool = new SlotPool({ slots: 2, slotBytes: 4096 });
    expect(pool.buffer.byteLength).toBe(8192);
    const a = await pool.acquire();
    const b = await pool.acquire();
    expect(new Set([a, b])).toEqual(new Set([0, 1]));
    expect(pool.occupancy).toEqual({ inUse: 2, slots: 2, waiting: 0 });
    const order: number[] = [];
    const w1 = pool.acquire().then((s) => (order.push(1), s));
    const w2 = pool.acquire().then((s) => (order.push(2), s));
    expect(pool.occupancy.waiting).toBe(2);
    pool.release(a);
    pool.release(b);
    expect(await Promise.all([w1, w2])).toEqual([a, b]);
    expect(order).toEqual([1, 2]);
    await expect(pool.acquire({ timeoutMs: 30 })).rejects.toMatchObject({ code: 'SLUICE_TIMEOUT' });
    const ac = new AbortController();
    const w3 = pool.acquire({ signal: ac.signal });
    ac.abort();
    await expect(w3).rejects.toMatchObject({ code: 'SLUICE_ABORTED' });
    expect(pool.occupancy).toEqual({ inUse: 2, slots: 2, waiting: 0 });
    expect(() => new SlotPool({ slotBytes: 100 })).toThrow(/slotBytes/);
  });
});
