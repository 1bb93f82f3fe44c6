/**
 * The web console's HTTP API against a real platform in this process (embedded backend, controller,
 * local driver with real worker processes): no token, no data (every data route answers 401 with no
 * body data); login sets an httpOnly SameSite=Strict cookie that then opens every route; the object
 * browser shows attributes and serves a binary `thumbnail` attribute as an image; dead letters are
 * listed and a redrive re-puts the object on the trigger path; the query box runs SELECT over the objects.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConsole, type RunningConsole } from '../../controller/console/index.ts';
import { startPlatform, type Platform } from '../../controller/platform.ts';
import { until as poll } from '../support/poll.ts';

const handler = fileURLToPath(new URL('../fixtures/functions/rt-count.ts', import.meta.url));
const TOKEN = 'console-test-token-0123456789';
const FN = 'counter';

let work: string;
let platform: Platform;
let ui: RunningConsole;
let cookie = '';

const until = <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 45_000) => poll(what, probe, timeoutMs);

const get = (path: string, headers: Record<string, string> = {}) => fetch(new URL(path, ui.url), { headers: { cookie, ...headers } });
const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(new URL(path, ui.url), { method: 'POST', headers: { cookie, 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

describe('console/http', () => {
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'sluice-console-http-'));
    platform = await startPlatform({ backend: { kind: 'local', dir: join(work, 'data') }, port: 0, tokens: [TOKEN], intervalMs: 500 });
    await platform.backend.createBucket('uploads', { shards: 2 });
    await platform.backend.createBucket('images', { shards: 1 });
    const spec = [
      'apiVersion: sluice.dev/v1',
      'kind: Function',
      'metadata:',
      `  name: ${FN}`,
      'spec:',
      `  handler: ${handler}`,
      '  triggers:',
      '    - object:',
      '        bucket: uploads',
      '  batch: {maxWait: 5ms}',
      '  retries: {maxAttempts: 2, initialBackoff: 10ms, maxBackoff: 20ms}',
    ].join('\n');
    await platform.controller.deploy(spec, work);
    ui = await startConsole({ plane: platform.controller, backend: platform.backend, tokens: [TOKEN], address: '127.0.0.1:0', sampleIntervalMs: 200, buckets: ['images'] });
  });

  afterAll(async () => {
    await ui?.close();
    await platform?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('console/http - every data route refuses a request without the token: 401 and no data', async () => {
    const routes = ['/api/session', '/api/functions', `/api/functions/${FN}`, `/api/functions/${FN}/logs`, `/api/functions/${FN}/dead-letters`, '/api/buckets', '/api/buckets/uploads/objects', '/api/buckets/uploads/object?key=a', '/api/buckets/images/attr?key=a&name=thumbnail'];
    for (const r of routes) {
      for (const headers of [{ cookie: '' }, { cookie: 'sluice_console=forged' }, { cookie: '', authorization: 'Bearer wrong' }]) {
        const res = await get(r, headers);
        expect(res.status, r).toBe(401);
        const body = (await res.json()) as Record<string, unknown>;
        expect(Object.keys(body), r).toEqual(['error']);
      }
    }
    for (const [r, b] of [['/api/query', { sql: 'SELECT * FROM uploads' }], [`/api/functions/${FN}/dead-letters/redrive`, { shard: 0, seq: 1 }]] as const) {
      const res = await post(r, b, { cookie: '' });
      expect(res.status, r).toBe(401);
    }
    // The page itself carries no data and loads without a session.
    const page = await get('/', { cookie: '' });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('/assets/app.js');
  });

  it('console/http - a wrong token does not log in; the right one sets an httpOnly SameSite=Strict cookie', async () => {
    const bad = await post('/api/login', { token: 'nope' }, { cookie: '' });
    expect(bad.status).toBe(401);
    expect(bad.headers.get('set-cookie')).toBeNull();
    const cross = await post('/api/login', { token: TOKEN }, { cookie: '', origin: 'http://evil.example' });
    expect(cross.status).toBe(403);
    const res = await post('/api/login', { token: TOKEN }, { cookie: '' });
    expect(res.status).toBe(200);
    const set = res.headers.get('set-cookie') ?? '';
    expect(set).toMatch(/^sluice_console=[A-Za-z0-9_-]{40,};/);
    expect(set).toContain('HttpOnly');
    expect(set).toContain('SameSite=Strict');
    expect(set).not.toContain(TOKEN);
    cookie = set.split(';')[0]!;
    expect((await get('/api/session')).status).toBe(200);
    // Bearer works too, for scripts.
    expect((await get('/api/session', { cookie: '', authorization: `Bearer ${TOKEN}` })).status).toBe(200);
  });

  it('console/http - functions show revision, replicas, counters, shards and a sampled series', async () => {
    const uploads = await platform.backend.objects('uploads');
    for (let i = 0; i < 20; i++) await uploads.put(`doc-${i}.txt`, `hello ${i}`);
    const fn = await until('counter seen=20 with a ready replica', async () => {
      const r = (await (await get('/api/functions')).json()) as { functions: { name: string; revision: number; replicas: { ready: number; desired: number }; counters: Record<string, number> }[] };
      const f = r.functions.find((x) => x.name === FN);
      return f && f.counters.seen === 20 && f.replicas.ready === 1 ? f : undefined;
    });
    expect(fn.revision).toBe(1);
    expect(fn.replicas.desired).toBe(1);
    const detail = (await (await get(`/api/functions/${FN}`)).json()) as { status: { shards: { owner: string; epoch: number; lag: number }[] }; series: { at: number; lag: number }[] };
    expect(detail.status.shards).toHaveLength(2);
    for (const s of detail.status.shards) expect(s.epoch).toBeGreaterThanOrEqual(1);
    expect(detail.series.length).toBeGreaterThan(1);
    expect((await get('/api/functions/nope')).status).toBe(404);
  });

  it('console/http - the object browser lists prefixes and shows attributes; a thumbnail attribute is served as an image', async () => {
    const jpeg = await sharp({ create: { width: 32, height: 24, channels: 3, background: { r: 200, g: 40, b: 40 } } }).jpeg().toBuffer();
    const images = await platform.backend.objects('images');
    await images.put('cats/tom.jpg', jpeg, { contentType: 'image/jpeg', attrs: { thumbnail: jpeg, width: 32, label: 'tom' } });
    await images.put('dogs/rex.jpg', jpeg, { contentType: 'image/jpeg' });
    const b = (await (await get('/api/buckets')).json()) as { buckets: string[] };
    expect(b.buckets).toEqual(['images', 'uploads']);
    const top = (await (await get('/api/buckets/images/objects')).json()) as { prefixes: string[]; objects: unknown[] };
    expect(top.prefixes).toEqual(['cats/', 'dogs/']);
    const cats = (await (await get('/api/buckets/images/objects?prefix=cats%2F')).json()) as { objects: { key: string; size: number }[] };
    expect(cats.objects.map((o) => o.key)).toEqual(['cats/tom.jpg']);
    const head = (await (await get(`/api/buckets/images/object?key=${encodeURIComponent('cats/tom.jpg')}`)).json()) as { attrs: Record<string, unknown>; size: number };
    expect(head.size).toBe(jpeg.length);
    expect(head.attrs).toEqual({ thumbnail: { $bytes: jpeg.length, $image: 'image/jpeg' }, width: 32, label: 'tom' });
    const img = await get(`/api/buckets/images/attr?key=${encodeURIComponent('cats/tom.jpg')}&name=thumbnail`);
    expect(img.status).toBe(200);
    expect(img.headers.get('content-type')).toBe('image/jpeg');
    expect(Buffer.from(await img.arrayBuffer()).equals(jpeg)).toBe(true);
    expect((await get(`/api/buckets/images/attr?key=${encodeURIComponent('cats/tom.jpg')}&name=label`)).status).toBe(404);
    expect((await get('/api/buckets/images/object?key=missing')).status).toBe(404);
    expect((await get('/api/buckets/nosuch/objects')).status).toBe(404);
  });

  it('console/http - dead letters are listed and a redrive puts the object back on the trigger path', async () => {
    const uploads = await platform.backend.objects('uploads');
    await uploads.put('poison-1.txt', 'bad');
    type Letters = { total: number; letters: { shard: number; seq: number; letter: { key: string; error: { code: string } }; redriven?: { outcome: { status: string } } }[] };
    const dl = await until('a dead letter', async () => {
      const r = (await (await get(`/api/functions/${FN}/dead-letters`)).json()) as Letters;
      return r.total >= 1 ? r : undefined;
    });
    const l = dl.letters[0]!;
    expect(l.letter.key).toBe('poison-1.txt');
    const before = (await uploads.head('poison-1.txt'))!.version;
    const res = await post(`/api/functions/${FN}/dead-letters/redrive`, { shard: l.shard, seq: l.seq });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { outcome: { status: string } }).outcome.status).toBe('reput');
    expect((await uploads.head('poison-1.txt'))!.version).toBe(before + 1);
    // The redriven record fails again (it is poison): a second dead letter proves it ran the path again.
    const after = await until('the redriven record dead-lettered again', async () => {
      const r = (await (await get(`/api/functions/${FN}/dead-letters`)).json()) as Letters;
      return r.total >= 2 ? r : undefined;
    });
    expect(after.letters.find((x) => x.seq === l.seq && x.shard === l.shard)?.redriven?.outcome.status).toBe('reput');
    expect((await post(`/api/functions/${FN}/dead-letters/redrive`, { shard: 0, seq: 99_999 })).status).toBe(404);
    expect((await post(`/api/functions/${FN}/dead-letters/redrive`, { shard: 'x' })).status).toBe(400);
  });

  it('console/http - the query box runs SELECT over the objects and names a malformed statement', async () => {
    const res = await post('/api/query', { sql: 'SELECT key, len FROM uploads WHERE len > 3' });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { rows: { key: string; len: number }[] };
    expect(body.rows.length).toBeGreaterThan(0);
    for (const r of body.rows) expect(r.len).toBeGreaterThan(3);
    const bad = await post('/api/query', { sql: 'SELECT key FROM uploads WHERE len >' });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('SLUICE_EXPRESSION_SYNTAX');
    expect((await post('/api/query', { sql: 'DROP TABLE x' })).status).toBe(400);
    const form = await fetch(new URL('/api/query', ui.url), { method: 'POST', headers: { cookie, 'content-type': 'text/plain' }, body: 'x' });
    expect(form.status).toBe(415);
  });

  it('console/http - logout ends the session', async () => {
    expect((await post('/api/logout', {})).status).toBe(200);
    expect((await get('/api/functions')).status).toBe(401);
  });
});
