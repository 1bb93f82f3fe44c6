/**
 * The web console in a real browser: Debian's /usr/bin/chromium driven by playwright-core (nothing
 * downloaded), against a real `sluice dev` process (embedded backend, controller, worker processes,
 * console on a free port) running functions/scan-sensitive. It logs in with the control token, sees
 * the function with its counters, watches the lag rise while objects are uploaded with the function
 * scaled to 0 and drop once it runs again, opens an object and sees its attributes and its
 * `thumbnail` (a JPEG made with sharp) as an image, reads the workers' live logs, redrives a dead
 * letter of a second (failing) function, and is refused
 * without the token (browser and plain HTTP). Screenshots go to test/artifacts/console-*.png (gitignored; CI keeps them).
 *
 * In CI a missing chromium fails the file; elsewhere too: the console has no other browser test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Backend } from '../../bindings/types.ts';
import { ControlClient } from '../../controller/grpc/client.ts';
import { openBackend } from '../../runtime/index.ts';
import { until } from '../support/poll.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const sluiceBin = join(root, 'controller/cli/sluice.mjs');
const handler = join(root, 'functions/scan-sensitive/index.ts');
const artifacts = join(root, 'test/artifacts');
const CHROMIUM = process.env.SLUICE_CHROMIUM ?? '/usr/bin/chromium';
const FN = 'scan-sensitive';

let work: string;
let data: string;
let dev: ChildProcess | undefined;
let devExit: Promise<number | null>;
let url = '';
let control = '';
let token = '';
let backend: Backend;
let client: ControlClient;
let context: BrowserContext;
let page: Page;

const shot = (name: string) => page.screenshot({ path: join(artifacts, `console-${name}.png`), fullPage: true });
const num = (s: string | null) => Number((s ?? '').replace(/[^0-9]/g, ''));

async function upload(prefix: string, n: number): Promise<void> {
  const o = await backend.objects('uploads');
  for (let i = 0; i < n; i += 50)
    await Promise.all(Array.from({ length: Math.min(50, n - i) }, (_, j) => o.put(`${prefix}${i + j}.txt`, i + j === 7 ? 'ssn 123-45-6789' : `plain text ${i + j}`, { contentType: 'text/plain' })));
}

describe('console/browser', () => {
  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium (CI does) or set SLUICE_CHROMIUM`);
    mkdirSync(artifacts, { recursive: true });
    work = mkdtempSync(join(tmpdir(), 'sluice-console-browser-'));
    data = join(work, 'data');
    const fns = join(work, 'functions');
    mkdirSync(join(fns, FN), { recursive: true });
    // scan-sensitive itself (absolute handler path), scalable to 0 so the test can hold a backlog.
    writeFileSync(
      join(fns, FN, 'function.yaml'),
      ['apiVersion: sluice.dev/v1', 'kind: Function', 'metadata:', `  name: ${FN}`, 'spec:', `  handler: ${handler}`, '  triggers:', '    - object:', '        bucket: uploads', '  batch: {maxRecords: 50, maxWait: 20ms}', '  scaling: {minReplicas: 0, maxReplicas: 1, scaleToZeroAfter: 10m}', ''].join('\n'),
    );
    // A second function that dead-letters keys containing 'poison' at the first failure (rt-count fixture).
    mkdirSync(join(fns, 'counter'), { recursive: true });
    writeFileSync(
      join(fns, 'counter', 'function.yaml'),
      ['apiVersion: sluice.dev/v1', 'kind: Function', 'metadata:', '  name: counter', 'spec:', `  handler: ${join(root, 'test/fixtures/functions/rt-count.ts')}`, '  triggers:', '    - object:', '        bucket: inbox', '  batch: {maxWait: 5ms}', '  retries: {maxAttempts: 1}', ''].join('\n'),
    );
    const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
    for (const k of Object.keys(env)) if (k.startsWith('SLUICE_')) delete env[k];
    const p = spawn(process.execPath, [sluiceBin, 'dev', '--data', data, '--port', '0', '--ui', '127.0.0.1:0', '--functions', fns], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    dev = p;
    devExit = new Promise((r) => p.on('exit', (c) => r(c)));
    let out = '';
    let err = '';
    p.stderr.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-8000)));
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`sluice dev did not start in 45 s; stdout: ${out}; stderr: ${err}`)), 45_000);
      p.stdout.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        // The console URL is on the first line.
        const first = /^sluice dev: console (http:\/\/127\.0\.0\.1:\d+\/) .*control API on (127\.0\.0\.1:\d+) /.exec(out.split('\n')[0] ?? '');
        if (first && out.includes(`deployed ${FN} (revision 1)`) && out.includes('deployed counter (revision 1)')) {
          url = first[1]!;
          control = first[2]!;
          clearTimeout(t);
          resolve();
        }
      });
      void devExit.then((c) => (clearTimeout(t), reject(new Error(`sluice dev exited with ${c}; stdout: ${out}; stderr: ${err}`))));
    });
    token = (await import('node:fs')).readFileSync(join(data, 'token'), 'utf8').trim();
    backend = await openBackend({ kind: 'local', dir: data });
    client = await ControlClient.connect(control, token);
    context = await chromium.launchPersistentContext(join(work, 'chromium-profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
      viewport: { width: 1280, height: 900 },
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(30_000);
  }, 90_000);

  afterAll(async () => {
    await context?.close().catch(() => {});
    client?.close();
    await backend?.close().catch(() => {});
    if (dev && dev.exitCode === null && dev.signalCode === null) {
      dev.kill('SIGTERM');
      const t = setTimeout(() => dev?.kill('SIGKILL'), 15_000);
      await devExit;
      clearTimeout(t);
    }
    if (work) rmSync(work, { recursive: true, force: true });
  }, 60_000);

  it('console/browser - without the token there is no data: login page, 401 from every data route', async () => {
    for (const r of ['api/functions', `api/functions/${FN}`, 'api/buckets', 'api/buckets/uploads/objects']) {
      const res = await fetch(new URL(r, url));
      expect(res.status, r).toBe(401);
      expect(Object.keys((await res.json()) as object)).toEqual(['error']);
    }
    await page.goto(url);
    await page.getByTestId('login').waitFor();
    expect(await page.getByTestId('functions').count()).toBe(0);
    // The browser's own request without a session is refused too.
    expect((await page.request.get(new URL('api/functions', url).href)).status()).toBe(401);
    await page.fill('input[name=token]', 'not-the-token');
    await page.click('button[type=submit]');
    await page.getByTestId('login-error').waitFor();
    await shot('login');
  });

  it('console/browser - logs in and sees the function with revision, replicas and counters', async () => {
    await upload('warmup/', 20);
    await page.fill('input[name=token]', token);
    await page.click('button[type=submit]');
    const row = page.getByTestId(`fn-${FN}`);
    await row.waitFor();
    // The session cookie is httpOnly: page script cannot read it.
    expect(await page.evaluate(() => (globalThis as unknown as { document: { cookie: string } }).document.cookie)).toBe('');
    const c = (await context.cookies()).find((x) => x.name === 'sluice_console');
    expect(c?.httpOnly).toBe(true);
    expect(c?.sameSite).toBe('Strict');
    await until('objects_scanned=20 on the functions page', async () => ((await row.getByTestId('counters').textContent())?.includes('objects_scanned=20') ? true : undefined));
    expect(await row.getByTestId('replicas').textContent()).toBe('1/1');
    expect(await row.locator('td').nth(1).textContent()).toBe('1');
    await shot('functions');
  });

  it('console/browser - shards with owner and epoch; the lag rises with a backlog and drops while uploads go on', async () => {
    await page.goto(`${url}#/fn/${FN}`);
    await page.getByTestId('shards').locator('tbody tr').nth(3).waitFor();
    const shards = await page.getByTestId('shards').locator('tbody tr').allTextContents();
    expect(shards).toHaveLength(4);
    await until('every shard owned', async () => {
      const rows = await page.getByTestId('shards').locator('tbody tr').all();
      const owners = await Promise.all(rows.map((r) => r.locator('td').nth(1).textContent()));
      return owners.every((o) => o && o !== '—') ? true : undefined;
    });
    expect(await page.locator('[data-testid=chart-lag] canvas').count()).toBe(1);
    // Live logs: the worker's own lines reach the page.
    await until('worker log lines on the page', async () => ((await page.getByTestId('logs').textContent())?.includes('shard acquired') ? true : undefined));

    // Hold a backlog: scale to 0, upload, see the lag on the page.
    await client.scale(FN, 0);
    await upload('batch-a/', 600);
    const high = await until('lag ≥ 600 on the function page', async () => {
      const v = num(await page.getByTestId('fn-lag').textContent());
      return v >= 600 ? v : undefined;
    });
    await shot('lag-high');
    // Run again while more objects arrive; the lag must come down to 0 with every object scanned.
    await client.scale(FN, 1);
    const seen: number[] = [high];
    const more = upload('batch-b/', 600);
    await until(
      'lag back to 0 with 1220 objects scanned',
      async () => {
        seen.push(num(await page.getByTestId('fn-lag').textContent()));
        const summary = (await page.getByTestId('fn-summary').textContent()) ?? '';
        return seen[seen.length - 1] === 0 && summary.includes('objects_scanned=1,220') ? true : undefined;
      },
      45_000,
    );
    await more;
    expect(Math.max(...seen)).toBeGreaterThanOrEqual(600);
    expect(seen[seen.length - 1]).toBe(0);
    // The chart's last sample agrees once the sampler catches up.
    await until('the lag chart at 0', async () => ((await page.getByTestId('chart-lag').getAttribute('data-last')) === '0' ? true : undefined));
    await shot('function');
  }, 90_000);

  it('console/browser - opens an object and sees its attributes and its thumbnail as an image', async () => {
    const jpeg = await sharp({ create: { width: 96, height: 64, channels: 3, background: { r: 30, g: 120, b: 200 } } })
      .composite([{ input: Buffer.from('<svg width="96" height="64"><circle cx="48" cy="32" r="22" fill="#f6ad55"/></svg>'), top: 0, left: 0 }])
      .jpeg({ quality: 80 })
      .toBuffer();
    const o = await backend.objects('uploads');
    await o.put('photos/sunset.jpg', jpeg, { contentType: 'image/jpeg', attrs: { thumbnail: jpeg, camera: 'test-cam' } });
    await until('scan-sensitive marked the photo', async () => ((await o.head('photos/sunset.jpg'))?.attrs.has_ssn !== undefined ? true : undefined));
    await page.goto(`${url}#/objects/uploads?prefix=photos%2F`);
    await page.locator('[data-testid=objects] a[data-key="photos/sunset.jpg"]').click();
    const detail = page.getByTestId('object-detail');
    await detail.getByTestId('attr-has_ssn').waitFor();
    expect(await detail.getByTestId('attr-has_ssn').textContent()).toContain('false');
    expect(await detail.getByTestId('attr-camera').textContent()).toContain('"test-cam"');
    const img = detail.getByTestId('attr-img-thumbnail');
    await img.waitFor();
    await until('the thumbnail decoded', async () => ((await img.evaluate((e) => (e as unknown as { naturalWidth: number }).naturalWidth)) === 96 ? true : undefined));
    await shot('object');
  });

  it('console/browser - a dead letter is listed and redriven from the page', async () => {
    const inbox = await backend.objects('inbox');
    await inbox.put('poison-7.txt', 'always fails');
    await page.goto(`${url}#/fn/counter`);
    const row = page.getByTestId('dead-letters').locator('tbody tr', { hasText: 'poison-7.txt' });
    // The page refreshes dead letters every 5 s.
    await row.first().waitFor({ timeout: 45_000 });
    expect(await row.first().textContent()).toContain('poisoned poison-7.txt');
    const version = (await inbox.head('poison-7.txt'))!.version;
    await row.first().getByRole('button', { name: 'Redrive' }).click();
    expect(await page.getByTestId('redrive-result').textContent()).toMatch(/reput/);
    expect((await inbox.head('poison-7.txt'))!.version).toBe(version + 1);
    await page.getByText('redriven reput').first().waitFor();
    await shot('dead-letters');
  }, 60_000);

  it('console/browser - after logging out the page shows no data again', async () => {
    await page.goto(url);
    await page.click('nav .link');
    await page.getByTestId('login').waitFor();
    expect((await page.request.get(new URL('api/functions', url).href)).status()).toBe(401);
  });
});
