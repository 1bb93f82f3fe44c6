/**
 * What `sluice dev` runs (`dev.ts` registers the command and loads this on use): the local platform in
 * one command — embedded backend, controller, worker processes and the control API — deploying every
 * `functions/<name>/function.yaml` and redeploying on change. `--demo` then uploads the sample files and
 * prints what the functions found.
 */
import { watch, existsSync, readdirSync, readFileSync, type FSWatcher } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import { BindingError } from '../../../bindings/errors.ts';
import type { Backend, ObjectBinding } from '../../../bindings/types.ts';
import { handlerGraph, openStateTable, readCounters } from '../../../runtime/index.ts';
import { specDirOf } from '../../controller.ts';
import { startHttpIngress, type HttpIngress } from '../../http-ingress.ts';
import { LocalDriver } from '../../local-driver.ts';
import { startPlatform, type Platform } from '../../platform.ts';
import { loadFunctionSpec } from '../../spec/index.ts';
import type { RunningConsole } from '../../console/index.ts';
import { putPaths } from './objects.ts';
import { startDevS3 } from './dev-s3.ts';
import { backendSpec, type GlobalOptions } from '../context.ts';

const log = (s: string) => process.stdout.write(`${s}\n`);

function specFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && existsSync(join(dir, e.name, 'function.yaml')))
    .map((e) => join(dir, e.name, 'function.yaml'))
    .sort();
}

/** Creates the buckets and streams a spec's trigger needs (dev convenience; production creates them explicitly). */
async function ensureSources(backend: Backend, yaml: string): Promise<void> {
  const spec = loadFunctionSpec(yaml);
  const r = (replicas: number | undefined) => (replicas !== undefined ? { replicas } : {});
  // Buckets the function's object bindings name, too (serve-object reads bucket `site`); tables its KV
  // bindings name (geo-index writes `photos-by-place`).
  for (const b of spec.spec.bindings) {
    if (b.kind === 'object') await backend.createBucket(b.resource, { shards: 4, ...r(b.replicas) });
    if (b.kind === 'kv')
      await backend.createTable(b.resource, r(b.replicas)).catch((e: unknown) => {
        if (!(e instanceof BindingError && e.code === 'SLUICE_ALREADY_EXISTS')) throw e;
      });
  }
  for (const t of spec.spec.triggers) {
    type Src = { replicas?: number | undefined };
    const trigger = t as { object?: Src & { bucket: string }; stream?: Src & { stream: string }; query?: Src & { bucket: string } };
    // A bucket made beforehand (e.g. `sluice objects mb uploads --shards 8`) is kept as it is.
    if (trigger.object) {
      const bucket = trigger.object.bucket;
      const exists = await backend.objects(bucket).then(
        () => true,
        (e: unknown) => {
          if (e instanceof BindingError && e.code === 'SLUICE_BUCKET_NOT_FOUND') return false;
          throw e;
        },
      );
      if (!exists) await backend.createBucket(bucket, { shards: 4, ...r(trigger.object.replicas) });
    }
    if (trigger.query) await backend.createBucket(trigger.query.bucket, { shards: 4, ...r(trigger.query.replicas) });
    if (trigger.stream)
      await backend
        .streams()
        .create(trigger.stream.stream, { shards: 4, ...r(trigger.stream.replicas) })
        .catch((e: unknown) => {
          if (!(e instanceof BindingError && e.code === 'SLUICE_ALREADY_EXISTS')) throw e;
        });
  }
}

/** Prints a refused deploy: the message, and for a handler that does not load its real stack. */
function logRefused(f: string, e: unknown): void {
  const err = e as Error & { code?: string; details?: { stack?: unknown } };
  log(`cannot deploy ${f}: ${err.message}${err.code ? ` (${err.code})` : ''}`);
  if (typeof err.details?.stack === 'string') log(err.details.stack.replace(/^/gm, '    '));
}

/**
 * Deploys every spec (unchanged ones are a no-op); returns the handler modules of the specs that parsed.
 * `editAt` is when the file change that caused this run was seen (a reload's timings count from it).
 */
async function deployAll(p: Platform, files: string[], editAt?: number): Promise<string[]> {
  const modules: string[] = [];
  for (const f of files) {
    const started = editAt ?? Date.now();
    try {
      const yaml = readFileSync(f, 'utf8');
      const spec = loadFunctionSpec(yaml, f);
      modules.push(resolve(specDirOf(f), spec.spec.handler));
      const before = (await p.controller.list()).find((x) => x.name === spec.metadata.name)?.revision;
      await ensureSources(p.backend, yaml);
      const r = await p.controller.deploy(yaml, specDirOf(f));
      // A restart on the same data finds the function stored already: it is deployed again, unchanged.
      if (before === undefined || before === r.revision) log(`deployed ${r.name} (revision ${r.revision}${before === r.revision ? ', unchanged' : ''}) from ${f}`);
      else if (before !== r.revision) log(`reloaded ${r.name}: revision ${before} → ${r.revision}, ${Date.now() - started} ms after the ${editAt !== undefined ? 'edit' : 'deploy began'} (the old workers have drained; the new ones are taking the shards)`);
    } catch (e) {
      logRefused(f, e);
    }
  }
  return modules;
}

/**
 * Live reload: watches the functions folder (specs, new functions) and every file each handler
 * imports, wherever it lives (runtime/handler-graph.ts: esbuild's import graph), and redeploys on a
 * change. A change of code is a new revision; the controller loads it in a sandbox first and keeps
 * the running revision when it does not load.
 */
class DevWatcher {
  readonly #p: Platform;
  readonly #dir: string;
  readonly #watchers = new Map<string, FSWatcher>();
  /** Files outside the functions folder that handlers import, by directory. */
  #files = new Map<string, Set<string>>();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> = Promise.resolve();
  #again = false;
  #busy = false;
  /** When the first change not yet deployed was seen. */
  #editAt: number | undefined;

  constructor(p: Platform, dir: string) {
    this.#p = p;
    this.#dir = dir;
    if (existsSync(dir)) this.#watch(dir, true);
  }

  #watch(dir: string, recursive: boolean): void {
    try {
      const w = watch(dir, { recursive }, (_ev, name) => {
        if (!recursive && (name === null || !this.#files.get(dir)?.has(join(dir, name.toString())))) return;
        this.changed();
      });
      w.on('error', () => undefined);
      this.#watchers.set(dir, w);
    } catch {
      // A directory that vanished: the next graph will not name it.
    }
  }

  /** Schedules a redeploy (debounced: an editor's save is several events). */
  changed(): void {
    this.#editAt ??= Date.now();
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#run(), 50);
  }

  #run(): void {
    if (this.#busy) {
      this.#again = true;
      return;
    }
    this.#busy = true;
    this.#running = this.sync().finally(() => {
      this.#busy = false;
      if (this.#again) {
        this.#again = false;
        this.#run();
      }
    });
  }

  /** Deploys every spec, then watches the import graphs of their handlers. */
  async sync(): Promise<void> {
    const editAt = this.#editAt;
    this.#editAt = undefined;
    const modules = await deployAll(this.#p, specFiles(this.#dir), editAt);
    const outside = new Map<string, Set<string>>();
    for (const m of modules) {
      for (const f of (await handlerGraph(m)).files) {
        if (f.startsWith(this.#dir + sep)) continue; // under the recursive watch already
        const d = dirname(f);
        if (!outside.has(d)) outside.set(d, new Set());
        outside.get(d)!.add(f);
      }
    }
    this.#files = outside;
    for (const d of outside.keys()) if (!this.#watchers.has(d)) this.#watch(d, false);
    for (const [d, w] of this.#watchers) if (d !== this.#dir && !outside.has(d)) (w.close(), this.#watchers.delete(d));
  }

  close(): Promise<void> {
    clearTimeout(this.#timer);
    for (const w of this.#watchers.values()) w.close();
    return this.#running;
  }
}

async function demo(p: Platform, samples: string): Promise<void> {
  const bucket = 'uploads';
  const objects = await p.backend.objects(bucket);
  log(`\ndemo: uploading ${samples} to bucket '${bucket}'`);
  const put = (await putPaths(objects, [samples], 'demo/', {}, false)).filter((r) => r.error === undefined);
  const state = await openStateTable(p.backend);
  const shards = (await objects.info()).shards;
  const end = Date.now() + 60_000;
  let counters: Record<string, number> = {};
  // Wait until every uploaded object carries the function's verdict.
  for (;;) {
    const heads = await Promise.all(put.map((r) => objects.head(r.key)));
    counters = await readCounters(state, 'scan-sensitive', shards);
    if (heads.every((h) => h && h.attrs.has_ssn !== undefined)) break;
    if (Date.now() > end) {
      log('demo: the function did not finish within 60 s; see `sluice logs scan-sensitive`');
      return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  log('demo: what scan-sensitive found');
  for (const r of put) {
    const a = (await objects.getAttrs(r.key)).attrs;
    log(`  ${r.key.padEnd(36)} has_ssn=${String(a.has_ssn).padEnd(5)} has_ccard=${String(a.has_ccard)}`);
  }
  log(`  counters: ${Object.entries(counters).map(([k, v]) => `${k}=${v}`).join(' ')} (totals over every run on this data directory)`);
}

/** The web console on the platform; a taken default port falls back to a free one (an explicit one fails). */
async function startDevConsole(p: Platform, address: string, isDefault: boolean): Promise<RunningConsole> {
  const { startConsole } = await import('../../console/index.ts');
  const start = (a: string) => startConsole({ plane: p.controller, backend: p.backend, tokens: [p.token], address: a });
  const a = /^\d+$/.test(address) ? `127.0.0.1:${address}` : address;
  try {
    return await start(a);
  } catch (e) {
    if (!isDefault || !String((e as Error).message).includes('EADDRINUSE')) throw e;
    return start(a.replace(/:\d+$/, ':0'));
  }
}

/** The HTTP ingress of http-triggered functions; a taken default port falls back to a free one. */
async function startDevIngress(p: Platform, address: string, isDefault: boolean): Promise<HttpIngress> {
  const state = await openStateTable(p.backend);
  const m = /^(.*):(\d+)$/.exec(/^\d+$/.test(address) ? `127.0.0.1:${address}` : address);
  if (!m) throw new BindingError('SLUICE_INVALID_ARGUMENT', `--http must be host:port, got ${JSON.stringify(address)}`);
  const host = m[1]!.replace(/^\[|\]$/g, '');
  // Local workers are this process's children: connections are handed to them, not proxied.
  const driver = p.driver;
  const handOff = driver instanceof LocalDriver ? driver.sendHandle.bind(driver) : undefined;
  const base = { routes: p.controller, state, host, registry: p.controller.metrics.registry, ...(handOff ? { handOff } : {}) };
  try {
    return await startHttpIngress({ ...base, port: Number(m[2]) });
  } catch (e) {
    if (!isDefault || !String((e as Error).message).includes('EADDRINUSE')) throw e;
    return startHttpIngress({ ...base, port: 0 });
  }
}

/**
 * The photo pipeline part of the demo (issue 8): uploads functions/image-meta/samples to bucket
 * 'photos', prints what image-meta found, then (when geo-index is among the functions) what geo-index
 * put in table 'photos-by-place' — the chain upload → image-meta → geo-index.
 */
async function demoImages(p: Platform, samples: string): Promise<void> {
  const objects = await p.backend.objects('photos');
  log(`\ndemo: uploading ${samples} to bucket 'photos'`);
  const put = await putPaths(objects, [samples], 'demo/', {}, false);
  const end = Date.now() + 60_000;
  while (!(await Promise.all(put.map((r) => objects.head(r.key)))).every((h) => h?.attrs.thumbnail !== undefined)) {
    if (Date.now() > end) {
      log('demo: image-meta did not finish within 60 s; see `sluice logs image-meta`');
      return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  log('demo: what image-meta found');
  for (const r of put) {
    const a = (await objects.getAttrs(r.key)).attrs;
    const where = a.latitude === undefined ? 'no GPS' : `${String(a.latitude)},${String(a.longitude)}`;
    log(`  ${r.key.padEnd(28)} ${`${String(a.width)}x${String(a.height)}`.padEnd(9)} ${where.padEnd(24)} ${String(a.taken_at ?? '-').padEnd(26)} ${String(a.camera ?? '-').padEnd(18)} thumbnail ${(a.thumbnail as Uint8Array).byteLength} B`);
  }
  if (existsSync(join(samples, '..', '..', 'geo-index', 'function.yaml'))) await demoPlaces(p, objects, put.map((r) => r.key));
}

/** The chain's second step: geo-index's `photos-by-place` entries for the located sample photos. */
async function demoPlaces(p: Platform, objects: ObjectBinding, keys: string[]): Promise<void> {
  const located: string[] = [];
  for (const k of keys) if ((await objects.getAttrs(k)).attrs.latitude !== undefined) located.push(k);
  const table = await p.backend.kv('photos-by-place').catch(() => undefined);
  const end = Date.now() + 30_000;
  const have = async () => (table ? (await Promise.all(located.map((k) => table.getItem(k)))).every((e) => e !== undefined) : false);
  while (!(await have())) {
    if (Date.now() > end) {
      log('demo: geo-index did not index the located photos within 30 s; see `sluice logs geo-index`');
      return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const near = await table!.getItems({ filter: 'latitude BETWEEN 40 AND 41', limit: 100 });
  log(`demo: geo-index put ${located.length} located photo(s) in table 'photos-by-place'; sluice kv query photos-by-place "latitude BETWEEN 40 AND 41":`);
  for (const e of near.items) log(`  ${e.key.padEnd(28)} ${String(e.item.latitude)},${String(e.item.longitude)}  ${String(e.item.taken_at ?? '-')}`);
}

/** Options of `sluice dev`. */
export interface DevOptions {
  functions: string;
  port: number;
  /** host:port of /metrics. */
  metrics: string;
  demo?: boolean;
  exitAfterDemo?: boolean;
  /** Web console address (`host:port`), or false for none. @default '127.0.0.1:7071' */
  ui?: string | false;
  /** `ui` is the default: when that port is taken, the console takes a free port instead of failing. @default false */
  uiIsDefault?: boolean;
  /** HTTP ingress address (`host:port`) for http-triggered functions, or false for none. @default '127.0.0.1:8080' */
  http?: string | false;
  /** `http` is the default: when that port is taken, the ingress takes a free port instead of failing. @default false */
  httpIsDefault?: boolean;
  /** S3 gateway `host:port` ('0' = a free port). @default '127.0.0.1:9000' (skipped with a notice when taken) */
  s3?: string;
}

/** Runs the local platform until SIGINT or SIGTERM (or after the demo with `exitAfterDemo`). */
export async function runDev(o: DevOptions, g: GlobalOptions): Promise<void> {
  const spec = backendSpec(g);
  // Controller events wait until the first line (the console URL) is out.
  const early: string[] = [];
  let started = false;
  const event = (s: string) => (started ? log(s) : early.push(s));
  const p = await startPlatform({ backend: spec, port: o.port, metrics: o.metrics, onEvent: (e) => event(`controller: ${e.function}: ${e.message}`) });
  const ui = o.ui === false ? undefined : await startDevConsole(p, o.ui ?? '127.0.0.1:7071', o.uiIsDefault ?? false).catch(async (e: unknown) => {
    await p.close();
    throw e;
  });
  const s3 = await startDevS3(p.backend, spec.kind === 'local' ? spec.dir : join(process.cwd(), '.sluice-run'), o.s3);
  const ingress = o.http === false ? undefined : await startDevIngress(p, o.http ?? '127.0.0.1:8080', o.httpIsDefault ?? false).catch(async (e: unknown) => {
    await ui?.close();
    await s3.close();
    await p.close();
    throw e;
  });
  log(`sluice dev: ${ui ? `console ${ui.url} · ` : ''}${ingress ? `http ${ingress.url} · ` : ''}${s3.line}; backend ${spec.kind === 'local' ? spec.dir : spec.url}; control API on 127.0.0.1:${p.server.port} (token in ${spec.kind === 'local' ? join(spec.dir, 'token') : '$SLUICE_TOKEN'})`);
  log(`metrics on http://${o.metrics.replace(/:\d+$/, '')}:${p.metricsPort}/metrics`);
  started = true;
  for (const s of early.splice(0)) log(s);
  const dir = resolve(o.functions);
  let watcher: DevWatcher | undefined;
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    log('stopping: workers finish their batches and commit');
    await watcher?.close();
    await ui?.close();
    await ingress?.close();
    await s3.close();
    await p.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
  watcher = new DevWatcher(p, dir);
  await watcher.sync();
  if (o.demo) await demo(p, join(dir, 'scan-sensitive', 'samples'));
  if (o.demo && existsSync(join(dir, 'image-meta', 'samples'))) await demoImages(p, join(dir, 'image-meta', 'samples'));
  if (o.exitAfterDemo) return stop();
  log(`\nwatching ${dir}; try: npx sluice put uploads ./some-file.txt && npx sluice attrs uploads some-file.txt   (Ctrl-C to stop)`);
}
