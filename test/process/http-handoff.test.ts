/**
 * Connection hand-off (runtime/triggers/http-handoff.ts): the ingress passes a connection to the worker
 * process of the function its first request is for, and that worker answers every request on it. Real
 * worker processes (controller + local driver), real TCP on loopback, requests written byte by byte as a
 * client would: a body that arrives after the hand-off, pipelined requests, a later request for another
 * function's route (forwarded through the ingress) and for no route (the ingress's 404) on the same
 * connection. The ingress's own series prove the requests were not proxied.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalBackend } from '../../bindings/local/index.ts';
import { Controller } from '../../controller/controller.ts';
import { startHttpIngress, type HttpIngress } from '../../controller/http-ingress.ts';
import { LocalDriver } from '../../controller/local-driver.ts';
import { openStateTable } from '../../runtime/state.ts';
import { until } from '../support/poll.ts';

const echo = fileURLToPath(new URL('../fixtures/functions/http-echo.ts', import.meta.url));

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** Complete responses at the front of `buf` (content-length framed, as the worker and ingress answer). */
function parse(buf: Buffer): Answer[] {
  const out: Answer[] = [];
  let at = 0;
  for (;;) {
    const end = buf.indexOf('\r\n\r\n', at);
    if (end < 0) return out;
    const [line, ...hs] = buf.toString('latin1', at, end).split('\r\n');
    const headers = Object.fromEntries(hs.map((h) => [h.slice(0, h.indexOf(':')).toLowerCase(), h.slice(h.indexOf(':') + 1).trim()]));
    const len = Number(headers['content-length'] ?? 0);
    if (buf.byteLength < end + 4 + len) return out;
    out.push({ status: Number(line!.split(' ')[1]), headers, body: buf.subarray(end + 4, end + 4 + len) });
    at = end + 4 + len;
  }
}

/**
 * One TCP connection: writes each part (waiting `gapMs` between parts), reads until `answers` complete
 * responses have arrived, and returns them.
 */
async function exchange(port: number, parts: (string | Buffer)[], answers: number, gapMs = 0): Promise<Answer[]> {
  const s = connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => s.once('connect', resolve).once('error', reject));
  let buf = Buffer.alloc(0);
  const done = new Promise<Answer[]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${parse(buf).length} of ${answers} answers within 20 s: ${buf.toString('latin1').slice(0, 500)}`)), 20_000);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const got = parse(buf);
      if (got.length >= answers) {
        clearTimeout(timer);
        resolve(got);
      }
    });
    s.on('error', (e) => (clearTimeout(timer), reject(e)));
    s.on('close', () => setTimeout(() => reject(new Error(`closed after ${parse(buf).length} of ${answers} answers`)), 50));
  });
  for (const p of parts) {
    s.write(p);
    if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
  }
  try {
    return await done;
  } finally {
    s.destroy();
  }
}

const get = (path: string) => `GET ${path} HTTP/1.1\r\nhost: x\r\n\r\n`;

describe('http hand-off', () => {
  let dir: string;
  let backend: LocalBackend;
  let controller: Controller;
  let ingress: HttpIngress;
  const registry = new Registry();
  const fn = `hand-${process.pid}`;

  /** Requests the ingress answered or proxied itself, for a route (function '' when none matched). */
  async function ingressCount(func: string, route: string): Promise<number> {
    const m = (await registry.getMetricsAsJSON()).find((x) => x.name === 'sluice_ingress_request_seconds');
    return (m?.values ?? []).filter((v) => (v as { metricName?: string }).metricName === 'sluice_ingress_request_seconds_count' && v.labels.function === func && v.labels.route === route).reduce((a, v) => a + v.value, 0);
  }
  async function handOffs(): Promise<number> {
    const m = (await registry.getMetricsAsJSON()).find((x) => x.name === 'sluice_ingress_handoffs_total');
    return (m?.values ?? []).reduce((a, v) => a + v.value, 0);
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-handoff-'));
    backend = await LocalBackend.open({ dir: join(dir, 'data') });
    const driver = new LocalDriver({ runDir: join(dir, 'run'), restartDelayMs: 100 });
    controller = await Controller.open({ backend, driver, intervalMs: 60_000 });
    const spec = (name: string, path: string, isolation: string) =>
      `apiVersion: sluice.dev/v1\nkind: Function\nmetadata: {name: ${name}}\nspec:\n  handler: ${JSON.stringify(echo)}\n  backend: {kind: local, dir: ${JSON.stringify(join(dir, 'data'))}}\n  triggers: [{http: {path: ${path}, isolation: ${isolation}}}]\n  timeout: 5s\n`;
    await controller.deploy(spec(fn, '/hand', 'inline'), dir);
    await controller.deploy(spec(`${fn}-t`, '/thread', 'thread'), dir);
    await controller.deploy(spec(`${fn}-sub`, '/hand/sub', 'inline'), dir);
    ingress = await startHttpIngress({ routes: controller, state: await openStateTable(backend), port: 0, registry, handOff: driver.sendHandle.bind(driver) });
    for (const p of ['/hand', '/thread', '/hand/sub']) await until(`${p} served`, async () => (await fetch(`${ingress.url}${p}`).catch(() => undefined))?.status === 200, 90_000, 200);
  }, 150_000);

  afterAll(async () => {
    await ingress?.close();
    await controller?.close();
    await backend?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a handed-off connection is answered by the worker, not proxied: keep-alive requests, a body sent after the hand-off, pipelining', async () => {
    const proxiedBefore = await ingressCount(fn, '/hand');
    const before = await handOffs();
    // The head alone, then the body 300 ms later: it reaches the worker, which holds the socket by then.
    const body = Buffer.alloc(50_000, 9);
    const [post] = await exchange(ingress.port, [`POST /hand/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-test\r\ncontent-length: ${body.byteLength}\r\n\r\n`, body], 1, 300);
    expect(post!.status).toBe(201);
    expect(post!.headers['content-type']).toBe('application/x-test');
    expect(post!.body.equals(body)).toBe(true);
    // Three requests in one write (pipelined), then two more on the same connection.
    const answers = await exchange(ingress.port, [get('/hand?name=a') + get('/hand?name=b') + get('/hand?name=c'), get('/hand?name=d'), get('/hand?name=e')], 5, 50);
    expect(answers.map((a) => a.body.toString())).toEqual(['hello a', 'hello b', 'hello c', 'hello d', 'hello e']);
    expect(new Set(answers.map((a) => a.headers['x-request-id'])).size).toBe(5);
    expect(await handOffs()).toBe(before + 2);
    expect(await ingressCount(fn, '/hand')).toBe(proxiedBefore);
  });

  it('a later request for another route on a handed-off connection gets the answer the ingress would give', async () => {
    const [a, sub, other, none, back] = await exchange(ingress.port, [get('/hand?name=x'), get('/hand/sub?name=y'), get('/thread?name=z'), get('/nowhere'), get('/hand?name=w')], 5, 30);
    expect([a!.status, a!.body.toString()]).toEqual([200, 'hello x']);
    // /hand/sub is under /hand but is another function's (longer) route.
    expect([sub!.status, sub!.body.toString()]).toEqual([200, 'hello y']);
    expect([other!.status, other!.body.toString()]).toEqual([200, 'hello z']);
    expect(none!.status).toBe(404);
    expect(JSON.parse(none!.body.toString()).error.code).toBe('SLUICE_NOT_FOUND');
    expect([back!.status, back!.body.toString()]).toEqual([200, 'hello w']);
    expect(await ingressCount('', '')).toBeGreaterThanOrEqual(1);
  });

  it('a connection for a thread-isolated function and one whose first request has no route', async () => {
    const before = await handOffs();
    const [t] = await exchange(ingress.port, [get('/thread?name=q')], 1);
    expect([t!.status, t!.body.toString()]).toEqual([200, 'hello q']);
    expect(await handOffs()).toBe(before + 1);
    // No route: served by the ingress itself, and the same connection can then reach a function (proxied).
    const [none, then] = await exchange(ingress.port, [get('/nope'), get('/hand?name=p')], 2, 30);
    expect(none!.status).toBe(404);
    expect([then!.status, then!.body.toString()]).toEqual([200, 'hello p']);
    // A request line split over two writes is routed (and handed off) once it is whole.
    const [split] = await exchange(ingress.port, ['GET /ha', 'nd?name=s HTTP/1.1\r\nhost: x\r\n\r\n'], 1, 100);
    expect([split!.status, split!.body.toString()]).toEqual([200, 'hello s']);
    expect(await handOffs()).toBe(before + 2);
  });
});
