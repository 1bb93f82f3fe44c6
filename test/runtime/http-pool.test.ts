/**
 * The HTTP trigger's handler-thread pool (runtime/triggers/http-pool.ts) with real threads running the
 * http-echo fixture: requests of one turn travel to a thread in one message, the least-loaded thread
 * takes the next request, requests beyond every thread's concurrency wait, a request past its deadline
 * rejects with a TimeoutError and its thread is replaced — what else ran on it fails with
 * SLUICE_HANDLER_FAILED, what waited runs on the replacement — and destroy() rejects what is left.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MessagePort, Worker } from 'node:worker_threads';
import pino from 'pino';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { HttpThreadPool } from '../../runtime/triggers/http-pool.ts';
import type { HttpTask, HttpTaskResult } from '../../runtime/triggers/http-thread.ts';

const BOOTSTRAP = fileURLToPath(new URL('../../runtime/triggers/http-bootstrap.mjs', import.meta.url));
const ECHO = fileURLToPath(new URL('../fixtures/functions/http-echo.ts', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'sluice-http-pool-'));
const log = pino({ level: 'silent' });
const pools: HttpThreadPool[] = [];

function pool(threads: number, concurrency: number, filename = BOOTSTRAP, startTimeoutMs?: number): HttpThreadPool {
  const p = new HttpThreadPool({
    filename,
    ...(startTimeoutMs === undefined ? {} : { startTimeoutMs }),
    threads,
    concurrency,
    workerData: { module: ECHO, function: 'echo', backend: { kind: 'local', dir: join(dir, 'data') }, bindings: [], logLevel: 'silent', secrets: {} },
    log,
  });
  pools.push(p);
  return p;
}

function task(path: string, deadlineInMs = 10_000, extra: Partial<HttpTask> = {}): HttpTask {
  return { req: { method: 'GET', path: `/echo-fn${path}`, query: {}, headers: {}, body: new Uint8Array(0), streamed: false, requestId: `r-${path}` }, deadlineMs: Date.now() + deadlineInMs, ...extra };
}

function text(r: HttpTaskResult): string {
  if (!('ok' in r) || !r.ok) throw new Error(`not an ok result: ${JSON.stringify(r)}`);
  return typeof r.body === 'string' ? r.body : Buffer.from(r.body).toString();
}

/** The pool is ready once every thread reported its module loaded and a warm-up was answered. */
async function warm(p: HttpThreadPool, threads: number): Promise<void> {
  await p.run(task('/', 30_000, { warm: true }));
  // Bounded: 30 s for the other threads to load.
  for (const end = Date.now() + 30_000; p.load.readyThreads < threads; ) {
    if (Date.now() > end) throw new Error(`only ${p.load.readyThreads} of ${threads} threads ready after 30 s`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(pools.splice(0).map((p) => p.destroy()));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('http handler pool', () => {
  it('one message per thread per turn; the least-loaded thread takes the next request; beyond concurrency requests wait', async () => {
    const p = pool(2, 2);
    await warm(p, 2);
    const sent = vi.spyOn(MessagePort.prototype, 'postMessage');
    const answers = Array.from({ length: 6 }, (_, i) => p.run(task(`/slow`, 10_000, { req: { ...task('/slow').req, query: { ms: '150' }, requestId: `s${i}` } })));
    // Dispatched in one turn: 2 per thread running, 2 waiting.
    expect(p.load).toEqual({ running: 4, waiting: 2, readyThreads: 2 });
    const results = await Promise.all(answers);
    expect(results.map(text)).toEqual(Array(6).fill('slow done'));
    // Two messages for the first four (one per thread, sent together), then the two that waited: each
    // sent when a place freed, at most one message each.
    const batches = sent.mock.calls.map((c) => (c[0] as unknown[]).length);
    expect(batches.slice(0, 2)).toEqual([2, 2]);
    expect(batches.reduce((a, b) => a + b, 0)).toBe(6);
    expect(batches.length).toBeLessThanOrEqual(4);
    expect(p.load).toEqual({ running: 0, waiting: 0, readyThreads: 2 });
  });

  it('a request past its deadline rejects with TimeoutError; its thread is replaced, what ran on it fails, what waited runs on the replacement', async () => {
    const p = pool(1, 2);
    await warm(p, 1);
    const slowTask = task('/slow', 10_000);
    slowTask.req = { ...slowTask.req, query: { ms: '3000' } };
    const spin = p.run(task('/spin', 400));
    const slow = p.run(slowTask);
    const waiting = p.run(task('/', 20_000));
    expect(p.load).toEqual({ running: 2, waiting: 1, readyThreads: 1 });
    await expect(spin).rejects.toMatchObject({ name: 'TimeoutError' });
    const collateral = await slow;
    expect(collateral).toMatchObject({ ok: false, error: { code: 'SLUICE_HANDLER_FAILED' } });
    // The replacement thread loads the module, then answers the request that waited.
    expect(text(await waiting)).toBe('hello world');
    expect(text(await p.run(task('/')))).toBe('hello world');
  });

  it('a replacement thread takes no request before its module loaded; requests that waited past their deadline replace no thread', async () => {
    const p = pool(2, 1);
    await warm(p, 2);
    const terminated = vi.spyOn(Worker.prototype, 'terminate');
    await expect(p.run(task('/spin', 300))).rejects.toMatchObject({ name: 'TimeoutError' });
    expect(terminated).toHaveBeenCalledTimes(1);
    // The replacement is loading: the next request goes to the ready thread at once.
    expect(p.load.readyThreads).toBe(1);
    const next = p.run(task('/'));
    expect(p.load).toMatchObject({ running: 1, waiting: 0 });
    expect(text(await next)).toBe('hello world');

    const one = pool(1, 1);
    await warm(one, 1);
    terminated.mockClear();
    const runaway = one.run(task('/spin', 300));
    const waiters = Array.from({ length: 5 }, () => one.run(task('/', 300)));
    const outcomes = await Promise.allSettled([runaway, ...waiters]);
    expect(outcomes.map((o) => (o.status === 'rejected' ? (o.reason as Error).name : 'ok'))).toEqual(Array(6).fill('TimeoutError'));
    // One runaway, one replacement: the waiters expired in the pool, not on the fresh thread.
    expect(terminated).toHaveBeenCalledTimes(1);
    expect(text(await one.run(task('/', 20_000)))).toBe('hello world');
  });

  it("handler code posting on the thread's parentPort does not reach the pool; response headers come back lower-case", async () => {
    const p = pool(1, 2);
    await warm(p, 1);
    expect(text(await p.run(task('/post')))).toBe('posted');
    const h = await p.run(task('/headers'));
    expect(h).toMatchObject({ ok: true, headers: { 'content-type': 'text/x-upper', 'content-length': '5', 'x-request-id': 'mine' } });
    expect(Object.keys((h as { headers: object }).headers).sort()).toEqual(['content-length', 'content-type', 'x-request-id']);
    expect(text(await p.run(task('/')))).toBe('hello world');
  });

  it('a thread that dies while starting fails the requests waiting for it instead of leaving them waiting', async () => {
    const broken = join(dir, 'broken-bootstrap.mjs');
    writeFileSync(broken, "throw new Error('bootstrap broken');\n");
    const p = pool(1, 1, broken);
    const warmUp = p.run(task('/', 30_000, { warm: true })).then(() => 'answered', (e: unknown) => e);
    expect(await warmUp).toMatchObject({ code: 'SLUICE_HANDLER_FAILED', message: expect.stringContaining('bootstrap broken') });
    expect(p.load).toMatchObject({ waiting: 0, readyThreads: 0 });
  });

  it('a thread whose start hangs is replaced after startTimeoutMs; a request waiting meanwhile gets its TimeoutError at its deadline', async () => {
    const hanging = join(dir, 'hanging-bootstrap.mjs');
    writeFileSync(hanging, 'setInterval(() => {}, 1000);\nawait new Promise(() => {});\n');
    const terminated = vi.spyOn(Worker.prototype, 'terminate');
    const p = pool(1, 1, hanging, 300);
    const t0 = Date.now();
    await expect(p.run(task('/', 1_000))).rejects.toMatchObject({ name: 'TimeoutError' });
    expect(Date.now() - t0).toBeLessThan(5_000);
    // Replaced at least twice in ≈1 s (every 300 ms), never left waiting on a thread that will not start.
    expect(terminated.mock.calls.length).toBeGreaterThanOrEqual(2);
  });

  it('a handler error is an ok:false result, not a rejection; destroy() rejects what is still running', async () => {
    const p = pool(1, 4);
    await warm(p, 1);
    const thrown = await p.run(task('/throw'));
    expect(thrown).toMatchObject({ ok: false, error: { message: expect.stringContaining('secret internal detail') } });
    const longTask = task('/slow', 10_000);
    longTask.req = { ...longTask.req, query: { ms: '5000' } };
    const running = p.run(longTask).then(() => 'resolved', (e: unknown) => e);
    await p.destroy();
    expect(await running).toMatchObject({ code: 'SLUICE_BACKEND_UNAVAILABLE' });
    await expect(p.run(task('/'))).rejects.toMatchObject({ code: 'SLUICE_BACKEND_UNAVAILABLE' });
  });
});
