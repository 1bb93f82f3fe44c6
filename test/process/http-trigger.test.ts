/**
 * HTTP triggers end to end: the platform's ingress routes requests to real worker processes (controller +
 * local driver), the handler answers with its bindings; a throw is a 500 with the request id (no internals),
 * a runaway handler a 504 that leaves the worker serving, overload a 429 with Retry-After, an oversized body
 * a 413; unknown routes 404, wrong methods 405. The example serve-object function answers an object's body.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Controller } from '../../controller/controller.ts';
import { startHttpIngress, type HttpIngress } from '../../controller/http-ingress.ts';
import { LocalDriver } from '../../controller/local-driver.ts';
import { openStateTable } from '../../runtime/state.ts';
import { forEachBackend, tn } from '../conformance/backends.ts';
import { until as poll } from '../support/poll.ts';

const echo = fileURLToPath(new URL('../fixtures/functions/http-echo.ts', import.meta.url));
const serveObject = fileURLToPath(new URL('../../functions/serve-object/index.ts', import.meta.url));

/** Polls; a request that fails (the ingress not routing yet) is "not yet". */
const until = (what: string, pred: () => Promise<boolean>, ms = 60_000) => poll(what, () => pred().catch(() => false), ms);

forEachBackend('http', (ctx) => {
  let controller: Controller;
  let ingress: HttpIngress;
  let runDir: string;
  const bucket = `site-${process.pid}`;
  const url = (p: string) => `${ingress.url}${p}`;

  beforeAll(async () => {
    runDir = mkdtempSync(join(tmpdir(), 'sluice-http-'));
    controller = await Controller.open({ backend: ctx.backend, driver: new LocalDriver({ runDir, restartDelayMs: 100 }), intervalMs: 60_000 });
    const c = ctx.childSpec();
    const backend = c.kind === 'local' ? `{kind: local, dir: ${JSON.stringify(c.dir)}}` : `{kind: nats, url: ${JSON.stringify(c.url)}}`;
    await ctx.backend.createBucket(bucket, { shards: 1 });
    await controller.deploy(
      `apiVersion: sluice.dev/v1
kind: Function
metadata: {name: hello-${process.pid}}
spec:
  handler: ${JSON.stringify(echo)}
  backend: ${backend}
  triggers: [{http: {path: /hello, maxBodyBytes: 262144, concurrency: 1, maxQueue: 1}}]
  concurrency: {threads: 1}
  timeout: 1s
`,
      runDir,
    );
    await controller.deploy(
      `apiVersion: sluice.dev/v1
kind: Function
metadata: {name: files-${process.pid}}
spec:
  handler: ${JSON.stringify(serveObject)}
  backend: ${backend}
  triggers: [{http: {path: /files, methods: [GET, HEAD]}}]
  bindings: [{name: files, kind: object, resource: ${bucket}, access: read}]
`,
      runDir,
    );
    await controller.deploy(
      `apiVersion: sluice.dev/v1
kind: Function
metadata: {name: inline-${process.pid}}
spec:
  handler: ${JSON.stringify(echo)}
  backend: ${backend}
  triggers: [{http: {path: /inline, isolation: inline}}]
  timeout: 1s
`,
      runDir,
    );
    ingress = await startHttpIngress({ routes: controller, state: await openStateTable(ctx.backend), port: 0 });
    await until('hello served', async () => (await fetch(url('/hello'))).status === 200);
    await until('inline served', async () => (await fetch(url('/inline'))).status === 200);
    await until('files served', async () => (await fetch(url('/files/none'))).status === 404);
  }, 120_000);

  afterAll(async () => {
    await ingress?.close();
    await controller?.close();
    rmSync(runDir, { recursive: true, force: true });
  });

  it(tn('http', ctx, 'a request reaches the handler with method, path, query, headers and body; the answer comes back'), async () => {
    const r = await fetch(url('/hello?name=sluice'));
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('hello sluice');
    expect(r.headers.get('x-request-id')).toMatch(/^[\w-]{8,}$/);
    const body = Buffer.alloc(100_000, 7);
    const e = await fetch(url('/hello/echo'), { method: 'POST', headers: { 'content-type': 'application/x-test' }, body });
    expect(e.status).toBe(201);
    expect(e.headers.get('content-type')).toBe('application/x-test');
    expect(Buffer.from(await e.arrayBuffer()).equals(body)).toBe(true);
  });

  it(tn('http', ctx, "a handler's headers in any letter case go out once: its content-length and x-request-id, not the trigger's beside them"), async () => {
    for (const path of ['/hello/headers', '/inline/headers']) {
      const r = await fetch(url(path));
      expect(r.status, path).toBe(200);
      expect(await r.text()).toBe('hello');
      expect(r.headers.get('content-length')).toBe('5');
      expect(r.headers.get('x-request-id')).toBe('mine');
      expect(r.headers.get('content-type')).toBe('text/x-upper');
    }
  });

  it(tn('http', ctx, 'a throwing handler answers 500 with the request id and no internals'), async () => {
    const r = await fetch(url('/hello/throw'), { headers: { 'x-request-id': 'req-42' } });
    expect(r.status).toBe(500);
    const b = (await r.json()) as { requestId: string; error: { code: string; message: string } };
    expect(b.requestId).toBe('req-42');
    expect(b.error.code).toBe('SLUICE_HANDLER_FAILED');
    expect(JSON.stringify(b)).not.toContain('secret internal detail');
  });

  it(tn('http', ctx, 'a runaway handler answers 504 and the worker keeps serving'), async () => {
    const t0 = Date.now();
    const r = await fetch(url('/hello/spin'));
    expect(r.status).toBe(504);
    expect(Date.now() - t0).toBeLessThan(10_000);
    await until('served again', async () => (await fetch(url('/hello'))).status === 200, 30_000);
  });

  it(tn('http', ctx, 'isolation inline: the handler runs on the worker loop (request, body, 500 with request id); past its timeout 504, then served again'), async () => {
    const r = await fetch(url('/inline?name=loop'));
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('hello loop');
    const e = await fetch(url('/inline/echo'), { method: 'POST', headers: { 'content-type': 'application/x-test' }, body: 'abc' });
    expect(e.status).toBe(201);
    expect(await e.text()).toBe('abc');
    // A body past streamBodyBytes (1 MiB) reaches an inline handler as a stream, whole.
    const big = Buffer.alloc(3 * 1024 * 1024 + 17, 3);
    const hashed = (await (await fetch(url('/inline/hash'), { method: 'POST', body: big })).json()) as { sha256: string; bytes: number; streamed: boolean };
    expect(hashed).toMatchObject({ bytes: big.byteLength, streamed: true, sha256: createHash('sha256').update(big).digest('hex') });
    const t = await fetch(url('/inline/throw'));
    expect(t.status).toBe(500);
    expect(JSON.stringify(await t.json())).toContain(t.headers.get('x-request-id')!);
    const t0 = Date.now();
    const s = await fetch(url('/inline/slow?ms=3000'));
    expect(s.status).toBe(504);
    expect(Date.now() - t0).toBeLessThan(2_900);
    expect((await fetch(url('/inline'))).status).toBe(200);
  });

  it(tn('http', ctx, 'over capacity answers 429 with Retry-After; an oversized body 413; unknown route 404; wrong method 405'), async () => {
    const all = await Promise.all(Array.from({ length: 6 }, () => fetch(url('/hello/slow?ms=600'))));
    const codes = all.map((r) => r.status).sort();
    expect(codes).toContain(200);
    expect(codes).toContain(429);
    expect(all.find((r) => r.status === 429)!.headers.get('retry-after')).toBe('1');
    expect((await fetch(url('/hello/echo'), { method: 'POST', body: Buffer.alloc(300_000) })).status).toBe(413);
    expect((await fetch(url('/nothing-here'))).status).toBe(404);
    expect((await fetch(url('/files/x'), { method: 'POST', body: 'x' })).status).toBe(405);
  });

  it(tn('http', ctx, "serve-object answers an object's body from its read-only Object binding, 304 on its etag"), async () => {
    const o = await ctx.backend.objects(bucket);
    await o.put('docs/readme.txt', 'hello from the bucket', { contentType: 'text/plain' });
    const r = await fetch(url('/files/docs/readme.txt'));
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('text/plain');
    expect(await r.text()).toBe('hello from the bucket');
    const again = await fetch(url('/files/docs/readme.txt'), { headers: { 'if-none-match': r.headers.get('etag')! } });
    expect(again.status).toBe(304);
    expect((await fetch(url('/files/docs/missing.txt'))).status).toBe(404);
  });
});
