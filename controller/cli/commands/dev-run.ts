/**
 * What `sluice dev` runs (`dev.ts` registers the command and loads this on use): the local platform in
 * one command — embedded backend, controller, worker processes and the control API — deploying every
 * `functions/<name>/function.yaml` and redeploying on change. `--demo` then uploads the sample files and
 * prints what the functions found.
 */
import { watch, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BindingError } from '../../../bindings/errors.ts';
import type { Backend } from '../../../bindings/types.ts';
import { openStateTable, readCounters } from '../../../runtime/index.ts';
import { specDirOf } from '../../controller.ts';
import { startHttpIngress, type HttpIngress } from '../../http-ingress.ts';
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
  // Buckets the function's object bindings name, too (serve-object reads bucket `site`).
  for (const b of spec.spec.bindings) if (b.kind === 'object') await backend.createBucket(b.resource, { shards: 4 });
  for (const t of spec.spec.triggers) {
    const trigger = t as { object?: { bucket: string }; stream?: { stream: string }; query?: { bucket: string } };
    if (trigger.object) await backend.createBucket(trigger.object.bucket, { shards: 4 });
    if (trigger.query) await backend.createBucket(trigger.query.bucket, { shards: 4 });
    if (trigger.stream)
      await backend
        .streams()
        .create(trigger.stream.stream, { shards: 4 })
        .catch((e: unknown) => {
          if (!(e instanceof BindingError && e.code === 'SLUICE_ALREADY_EXISTS')) throw e;
        });
  }
}

async function deployAll(p: Platform, files: string[]): Promise<void> {
  for (const f of files) {
    try {
      const yaml = readFileSync(f, 'utf8');
      await ensureSources(p.backend, yaml);
      const r = await p.controller.deploy(yaml, specDirOf(f));
      log(`deployed ${r.name} (revision ${r.revision}) from ${f}`);
    } catch (e) {
      log(`cannot deploy ${f}: ${(e as Error).message}`);
    }
  }
}

async function demo(p: Platform, samples: string): Promise<void> {
  const bucket = 'uploads';
  const objects = await p.backend.objects(bucket);
  log(`\ndemo: uploading ${samples} to bucket '${bucket}'`);
  const put = await putPaths(objects, [samples], 'demo/', {}, false);
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
  try {
    return await startHttpIngress({ routes: p.controller, state, host, port: Number(m[2]) });
  } catch (e) {
    if (!isDefault || !String((e as Error).message).includes('EADDRINUSE')) throw e;
    return startHttpIngress({ routes: p.controller, state, host, port: 0 });
  }
}

/**
 * The image-meta part of the demo (issue 8; kept small on purpose — the chain into geo-index comes with
 * that function): uploads functions/image-meta/samples to bucket 'photos' and prints what was found.
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
}

/** Options of `sluice dev`. */
export interface DevOptions {
  functions: string;
  port: number;
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
  const p = await startPlatform({ backend: spec, port: o.port, onEvent: (e) => event(`controller: ${e.function}: ${e.message}`) });
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
  started = true;
  for (const s of early.splice(0)) log(s);
  const dir = resolve(o.functions);
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    log('stopping: workers finish their batches and commit');
    await ui?.close();
    await ingress?.close();
    await s3.close();
    await p.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
  await deployAll(p, specFiles(dir));
  if (o.demo) await demo(p, join(dir, 'scan-sensitive', 'samples'));
  if (o.demo && existsSync(join(dir, 'image-meta', 'samples'))) await demoImages(p, join(dir, 'image-meta', 'samples'));
  if (o.exitAfterDemo) return stop();
  // Redeploy a function when anything in its folder changes (debounced).
  if (existsSync(dir)) {
    let timer: NodeJS.Timeout | undefined;
    watch(dir, { recursive: true }, () => {
      clearTimeout(timer);
      timer = setTimeout(() => void deployAll(p, specFiles(dir)), 300);
    });
  }
  log(`\nwatching ${dir}; try: npx sluice put uploads ./some-file.txt && npx sluice attrs uploads some-file.txt   (Ctrl-C to stop)`);
}
