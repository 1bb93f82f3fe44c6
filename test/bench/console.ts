/**
 * Benchmark: does the web console slow the event path? The runtime's end-to-end load (objects
 * uploaded → change records → worker → scan-sensitive → committed attributes and counters) with the
 * console open and the worker's /metrics scraped every second, against the same load without either,
 * in the same run, interleaved A B A B … (plain, console, plain, console; at least 3 of each) so that
 * drift in the machine's load falls on both sides.
 *
 * Layout, as under `sluice dev`: this process holds the platform side (embedded backend, the real
 * Controller reconciling every second, and — in the "console" rounds — the console server with its
 * 1 s status sampler); the worker is its own process (runtime/worker-main.ts, threads 0, maxRecords
 * 500, batchesInFlight 8, 8 shards, /metrics on a free port). The Controller's driver here only
 * reports that worker (the bench starts and stops it itself, so every round has the same backlog).
 *
 * Each round: N (default 40,000) 1 KiB objects (10% with an SSN) are uploaded to bucket `uploads`
 * while no worker runs (unmeasured); then, in a "console" round, the console starts, a headless
 * chromium (/usr/bin/chromium via playwright-core) opens the function's page (it polls status, series
 * and logs every second and redraws two uPlot charts) and a scraper GETs the worker's /metrics every
 * second; then the worker starts and the round is timed from its `ready` line until the function's
 * counter objects_scanned has grown by N. Result: events/s per round; the ratio of each console round
 * to the plain round just before it, and the MEDIAN of those pair ratios (target ≥ 0.95): on a shared
 * machine one round that ran while the other load dipped moves a mean by tens of percent, and a pair
 * of adjacent rounds shares most of the machine's state. Because wall-clock rates on a shared machine move by tens of
 * percent between rounds, each round also reports the worker's CPU per event (/proc/<pid>/stat), the
 * CPU of this process (controller + console + sampler + the bench's counter polling) and of chromium's
 * process tree, in cores: what the console costs, independent of what else the machine runs.
 * `--browser off` runs the console rounds without a page open, to split server from browser cost.
 *
 * Run: `npx tsx test/bench/console.ts [--n 20000] [--rounds 6] [--browser on|off]` (not in CI; a few
 * minutes; rounds even, at least 6).
 */
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { startConsole } from '../../controller/console/index.ts';
import type { LogLine } from '../../controller/control-plane.ts';
import { Controller } from '../../controller/controller.ts';
import type { Driver } from '../../controller/driver.ts';
import { openBackend, openStateTable, readCounters } from '../../runtime/index.ts';

const { values: args } = parseArgs({ options: { n: { type: 'string', default: '20000' }, rounds: { type: 'string', default: '6' }, browser: { type: 'string', default: 'on' } } });
/** `--browser off`: the console server, its sampler and the /metrics scrape without a page open (to split the cost). */
const BROWSER = args.browser !== 'off';
const N = Number(args.n);
const ROUNDS = Number(args.rounds);
if (!Number.isInteger(ROUNDS) || ROUNDS < 6 || ROUNDS % 2 !== 0) throw new Error(`--rounds must be an even number of at least 6 (3 plain, 3 console, interleaved), got ${args.rounds}`);
const FN = 'scan-sensitive';
const SHARDS = 8;
const MODULE = fileURLToPath(new URL('../../functions/scan-sensitive/index.ts', import.meta.url));
const WORKER_MAIN = fileURLToPath(new URL('../../runtime/worker-main.ts', import.meta.url));
const TOKEN = 'bench-console-token';
const ROUND_LIMIT_MS = 180_000;
const TARGET = 0.95;

const log = (s: string) => process.stdout.write(`${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const root = mkdtempSync(join(tmpdir(), 'sluice-bench-console-'));
const dir = join(root, 'data');
const backend = await openBackend({ kind: 'local', dir });
await backend.createBucket('uploads', { shards: SHARDS });
const objects = await backend.objects('uploads');
const state = await openStateTable(backend);

// The driver reports the bench's own worker; logs come from its stderr, as the local driver's do.
let workerReady = false;
const events = new EventEmitter();
const logs: LogLine[] = [];
const driver: Driver & { logs: (n: string) => LogLine[]; events: EventEmitter } = {
  kind: 'local',
  apply: async () => {},
  scale: async () => {},
  remove: async () => true,
  status: async () => ({ desired: 1, ready: workerReady ? 1 : 0, replicas: [] }),
  close: async () => {},
  logs: () => [...logs],
  events,
};
const controller = await Controller.open({ backend, driver, intervalMs: 1000 });
controller.start();
await controller.deploy(['apiVersion: sluice.dev/v1', 'kind: Function', 'metadata:', `  name: ${FN}`, 'spec:', `  handler: ${MODULE}`, '  triggers:', '    - object:', '        bucket: uploads'].join('\n'), root);
await controller.scale(FN, 1);

/** CPU seconds (user + system) of a process, from /proc (Linux; 0 when it is gone). */
function cpuOf(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / 100;
  } catch {
    return 0;
  }
}

/** Pids of every descendant of `root` (chromium's process tree, the worker). */
function descendants(root: number): number[] {
  const parent = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const f = readFileSync(`/proc/${d}/stat`, 'utf8');
      parent.set(Number(d), Number(f.slice(f.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // exited meanwhile
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [c, pp] of parent) if (pp === p) (out.push(c), walk(c));
  };
  walk(root);
  return out;
}

const body = (i: number) => (i % 10 === 0 ? `record ${i} ssn 123-45-6789 ` : `record ${i} nothing to see `).padEnd(1024, '.');

async function upload(prefix: string): Promise<void> {
  const t0 = performance.now();
  for (let i = 0; i < N; i += 200) await Promise.all(Array.from({ length: Math.min(200, N - i) }, (_, j) => objects.put(`${prefix}${i + j}`, body(i + j), { contentType: 'text/plain' })));
  log(`  uploaded ${N} objects in ${((performance.now() - t0) / 1000).toFixed(1)} s (unmeasured)`);
}

interface RoundResult {
  eps: number;
  /** Worker CPU per event, µs. */
  workerUsPerEvent: number;
  /** CPU of this process (controller, console, sampler, counter polling) and chromium's tree, in cores over the round. */
  sideCores: number;
  chromiumCores: number;
}

async function round(i: number, withConsole: boolean): Promise<RoundResult> {
  log(`round ${i + 1}/${ROUNDS}: ${withConsole ? `console${BROWSER ? ' open in chromium' : ' server only (no page open)'} + /metrics scraped every 1 s` : 'plain'}`);
  await upload(`r${i}/`);
  const base = (await readCounters(state, FN, SHARDS)).objects_scanned ?? 0;
  const ui = withConsole ? await startConsole({ plane: controller, backend, tokens: [TOKEN], address: '127.0.0.1:0' }) : undefined;
  const browser = withConsole && BROWSER
    ? await chromium.launchPersistentContext(join(root, `profile-${i}`), {
        executablePath: '/usr/bin/chromium',
        headless: true,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
      })
    : undefined;
  if (browser && ui) {
    const page = browser.pages()[0] ?? (await browser.newPage());
    await page.goto(ui.url);
    await page.fill('input[name=token]', TOKEN);
    await page.click('button[type=submit]');
    await page.goto(`${ui.url}#/fn/${FN}`);
    await page.getByTestId('chart-lag').waitFor();
    // Steady state: chromium's start-up work (other processes, the renderer compiling the bundle) is not the console's running cost.
    await sleep(3000);
  }
  const config = { function: FN, module: MODULE, trigger: { type: 'object', bucket: 'uploads' }, backend: { kind: 'local', dir }, threads: 0, batch: { maxRecords: 500, maxWait: '20ms' }, batchesInFlight: 8, leaseTtl: '30s', logLevel: 'warn', httpPort: 0 };
  const child = spawn(process.execPath, ['--import', 'tsx', WORKER_MAIN], { env: { ...process.env, SLUICE_WORKER_CONFIG: JSON.stringify(config) }, stdio: ['ignore', 'pipe', 'pipe'] });
  let readyAt = 0;
  let metricsPort = 0;
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    const m = /"event":"ready".*"httpPort":(\d+)/.exec(d);
    if (m) ((readyAt = performance.now()), (metricsPort = Number(m[1])), (workerReady = true));
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr = (stderr + d).slice(-4000);
    for (const l of d.split('\n').filter(Boolean)) {
      const line: LogLine = { at: new Date().toISOString(), ordinal: 0, level: 'info', message: l.slice(0, 200), fields: {} };
      logs.push(line);
      if (logs.length > 2000) logs.shift();
      events.emit('log', FN, line);
    }
  });
  let scrapes = 0;
  let scrapeTimer: NodeJS.Timeout | undefined;
  try {
    const startBy = performance.now() + 60_000;
    while (readyAt === 0) {
      if (performance.now() > startBy || child.exitCode !== null) throw new Error(`worker did not start: ${stderr}`);
      await sleep(10);
    }
    if (withConsole) {
      const scrape = () => {
        void fetch(`http://127.0.0.1:${metricsPort}/metrics`)
          .then((r) => r.text())
          .then(() => scrapes++)
          .catch(() => {});
        scrapeTimer = setTimeout(scrape, 1000);
      };
      scrape();
    }
    const others = descendants(process.pid).filter((p) => p !== child.pid);
    const side0 = process.cpuUsage();
    const chrome0 = others.reduce((a, p) => a + cpuOf(p), 0);
    const worker0 = cpuOf(child.pid!);
    let done = 0;
    let firstAt = 0;
    for (;;) {
      if (performance.now() - readyAt > ROUND_LIMIT_MS) throw new Error(`round ${i + 1}: ${done}/${N} after ${ROUND_LIMIT_MS / 1000} s`);
      await sleep(20);
      done = ((await readCounters(state, FN, SHARDS)).objects_scanned ?? 0) - base;
      if (done > 0 && firstAt === 0) firstAt = performance.now();
      if (done >= N) break;
    }
    const ms = performance.now() - readyAt;
    const eps = N / (ms / 1000);
    const workerUsPerEvent = ((cpuOf(child.pid!) - worker0) * 1e6) / N;
    const side = process.cpuUsage(side0);
    const chromiumCores = (others.reduce((a, p) => a + cpuOf(p), 0) - chrome0) / (ms / 1000);
    const sideCores = (side.user + side.system) / 1e6 / (ms / 1000);
    log(
      `  ${N} events in ${(ms / 1000).toFixed(2)} s = ${Math.round(eps).toLocaleString('en-US')} events/s (first commit ${Math.round(firstAt - readyAt)} ms after ready); ` +
        `worker CPU ${workerUsPerEvent.toFixed(0)} µs/event; this process ${sideCores.toFixed(2)} cores, chromium ${chromiumCores.toFixed(2)} cores${withConsole ? `; ${scrapes} /metrics scrapes` : ''}`,
    );
    return { eps, workerUsPerEvent, sideCores, chromiumCores };
  } finally {
    clearTimeout(scrapeTimer);
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
    workerReady = false;
    await browser?.close();
    await ui?.close();
  }
}

const plain: RoundResult[] = [];
const withUi: RoundResult[] = [];
const loadBefore = (await import('node:os')).loadavg();
try {
  for (let i = 0; i < ROUNDS; i++) {
    // A B A B …: each console round is paired with the plain round just before it.
    const on = i % 2 === 1;
    (on ? withUi : plain).push(await round(i, on));
  }
} finally {
  await controller.close();
  await backend.close();
  rmSync(root, { recursive: true, force: true });
}
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const median = (xs: number[]) => {
  const v = [...xs].sort((a, b) => a - b);
  return v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
};
const pairs = withUi.map((w, k) => w.eps / plain[k]!.eps);
const ratio = median(pairs);
const loadAfter = (await import('node:os')).loadavg();
const show = (label: string, rs: RoundResult[]) =>
  log(
    `${label}: ${rs.map((x) => Math.round(x.eps)).join(', ')} events/s (median ${Math.round(median(rs.map((r) => r.eps)))}, mean ${Math.round(mean(rs.map((r) => r.eps)))}); worker CPU ${mean(rs.map((r) => r.workerUsPerEvent)).toFixed(0)} µs/event; ` +
      `this process ${mean(rs.map((r) => r.sideCores)).toFixed(2)} cores; chromium ${mean(rs.map((r) => r.chromiumCores)).toFixed(2)} cores`,
  );
log('');
show('plain', plain);
show('console + /metrics', withUi);
log(`worker CPU per event, console / plain: ${(mean(withUi.map((r) => r.workerUsPerEvent)) / mean(plain.map((r) => r.workerUsPerEvent))).toFixed(3)}`);
log(`pair ratios (console round / the plain round before it): ${pairs.map((r) => r.toFixed(3)).join(', ')}`);
log(`ratio of the medians ${(median(withUi.map((r) => r.eps)) / median(plain.map((r) => r.eps))).toFixed(3)}, of the means ${(mean(withUi.map((r) => r.eps)) / mean(plain.map((r) => r.eps))).toFixed(3)}`);
log(`median pair ratio ${ratio.toFixed(3)} (target ≥ ${TARGET}): ${ratio >= TARGET ? 'MET' : 'MISSED'}; load average ${loadBefore[0]!.toFixed(1)} → ${loadAfter[0]!.toFixed(1)}`);
