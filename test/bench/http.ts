/**
 * Benchmark: an HTTP-triggered hello-world through the platform's ingress, against a raw `node:http`
 * server answering the same text, on the same cores in the same run. Load generator: autocannon
 * (in this process), keep-alive connections, rounds alternated raw / sluice / raw / sluice … so that
 * drift in the machine's load falls on both sides.
 *
 * The sluice side is what a request really crosses under `sluice dev`: the ingress (this process) →
 * keep-alive HTTP to the function's worker process (controller + local driver, embedded backend) →
 * the worker's HTTP server → the handler on a piscina thread → back. The raw server is its own child
 * process (one process, like the worker's HTTP server). Target (issue 11): sluice ≥ 0.5× raw req/s;
 * p99 latency reported for both.
 *
 * Run: `npx tsx test/bench/http.ts [--seconds 5] [--rounds 2] [--connections 32] [--isolation thread|inline]` (not in CI; ≈30 s).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
// @ts-expect-error autocannon ships no types (and @types/autocannon is not installed)
import autocannonUntyped from 'autocannon';
import { LocalBackend } from '../../bindings/local/index.ts';
import { Controller } from '../../controller/controller.ts';
import { startHttpIngress } from '../../controller/http-ingress.ts';
import { LocalDriver } from '../../controller/local-driver.ts';
import { Registry } from 'prom-client';
import { openStateTable, StateKeys } from '../../runtime/state.ts';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, rounds: { type: 'string', default: '2' }, connections: { type: 'string', default: '32' }, isolation: { type: 'string', default: 'thread' }, proxy: { type: 'boolean', default: false } } });
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const connections = Number(values.connections);
const echo = fileURLToPath(new URL('../fixtures/functions/http-echo.ts', import.meta.url));

interface AutocannonResult {
  requests: { average: number };
  latency: { p99: number };
  errors: number;
  timeouts: number;
  non2xx: number;
}
const autocannon = autocannonUntyped as (o: { url: string; connections: number; duration: number; pipelining: number }) => Promise<AutocannonResult>;

interface Round {
  rps: number;
  p99: number;
  errors: number;
  non2xx: number;
}

async function load(url: string, duration: number): Promise<Round> {
  const r = await autocannon({ url, connections, duration, pipelining: 1 });
  return { rps: r.requests.average, p99: r.latency.p99, errors: r.errors + r.timeouts, non2xx: r.non2xx };
}

/** The raw baseline: node:http in its own process, the same body the handler answers. */
async function startRaw(): Promise<{ url: string; proc: ChildProcess }> {
  const code = `require('node:http').createServer((q, s) => { s.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }); s.end('hello world'); }).listen(0, '127.0.0.1', function () { console.log(this.address().port); });`;
  const proc = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    proc.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    proc.once('exit', (c) => reject(new Error(`raw server exited ${c}`)));
  });
  return { url: `http://127.0.0.1:${port}/hello`, proc };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-http-'));
  const backend = await LocalBackend.open({ dir: join(dir, 'data') });
  const driver = new LocalDriver({ runDir: join(dir, 'run') });
  const controller = await Controller.open({ backend, driver, intervalMs: 60_000 });
  await controller.deploy(
    `apiVersion: sluice.dev/v1\nkind: Function\nmetadata: {name: hello}\nspec:\n  handler: ${JSON.stringify(echo)}\n  backend: {kind: local, dir: ${JSON.stringify(join(dir, 'data'))}}\n  triggers: [{http: {path: /hello, concurrency: 64, maxQueue: 1024, isolation: ${values.isolation}}}]\n  concurrency: {threads: 1}\n  timeout: 10s\n`,
    dir,
  );
  // As under `sluice dev`: connections handed to the worker process (--proxy: every request proxied).
  const registry = new Registry();
  const ingress = await startHttpIngress({ routes: controller, state: await openStateTable(backend), port: 0, registry, ...(values.proxy ? {} : { handOff: driver.sendHandle.bind(driver) }) });
  const raw = await startRaw();
  const sluiceUrl = `${ingress.url}/hello`;
  try {
    for (const deadline = Date.now() + 60_000; ; ) {
      if ((await fetch(sluiceUrl).catch(() => undefined))?.status === 200) break;
      if (Date.now() > deadline) throw new Error('the hello function never answered');
      await new Promise((r) => setTimeout(r, 200));
    }
    // Where the time goes: the worker's own server, without the ingress hop (one round, informative).
    const reg = (await (await openStateTable(backend)).getItem(StateKeys.httpWorker('hello', 0)))?.item as { url?: string } | undefined;
    if (process.env.BENCH_DIRECT && reg?.url) {
      await load(`${reg.url}/hello`, 1);
      const d = await load(`${reg.url}/hello`, seconds);
      console.log(`worker direct (no ingress): ${d.rps.toFixed(0)} req/s p99 ${d.p99} ms`);
    }
    // Warm both (JIT, connection pools) before measuring.
    await load(raw.url, 1);
    await load(sluiceUrl, 1);
    const rawRounds: Round[] = [];
    const sluiceRounds: Round[] = [];
    for (let i = 0; i < rounds; i++) {
      rawRounds.push(await load(raw.url, seconds));
      sluiceRounds.push(await load(sluiceUrl, seconds));
      console.log(`round ${i + 1}: raw ${rawRounds[i]!.rps.toFixed(0)} req/s p99 ${rawRounds[i]!.p99} ms | sluice ${sluiceRounds[i]!.rps.toFixed(0)} req/s p99 ${sluiceRounds[i]!.p99} ms (errors ${sluiceRounds[i]!.errors}, non-2xx ${sluiceRounds[i]!.non2xx})`);
    }
    // How the ingress carried the load: connections handed to the worker vs requests it proxied itself.
    const series = await registry.getMetricsAsJSON();
    const total = (name: string) => (series.find((m) => m.name === name)?.values ?? []).filter((v) => !('metricName' in v) || String(v.metricName).endsWith('_count') || !String(v.metricName).includes('_')).reduce((a, v) => a + v.value, 0);
    console.log(`ingress: ${total('sluice_ingress_handoffs_total')} connections handed off, ${total('sluice_ingress_request_seconds')} requests proxied`);
    const mean = (rs: Round[], f: (r: Round) => number) => rs.reduce((a, r) => a + f(r), 0) / rs.length;
    const ratio = mean(sluiceRounds, (r) => r.rps) / mean(rawRounds, (r) => r.rps);
    console.log(
      `\nhello world, ${connections} connections, ${rounds}×${seconds} s each: raw node:http ${mean(rawRounds, (r) => r.rps).toFixed(0)} req/s (p99 ${mean(rawRounds, (r) => r.p99).toFixed(1)} ms); ` +
        `sluice ingress → worker → handler thread ${mean(sluiceRounds, (r) => r.rps).toFixed(0)} req/s (p99 ${mean(sluiceRounds, (r) => r.p99).toFixed(1)} ms); ratio ${ratio.toFixed(2)}× (target ≥ 0.5×: ${ratio >= 0.5 ? 'met' : 'missed'})`,
    );
  } finally {
    raw.proc.kill();
    await ingress.close();
    await controller.close();
    await backend.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
