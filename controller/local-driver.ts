/**
 * The `local` driver: worker processes on this machine, one per ordinal 0..R-1 of each function.
 * A worker that dies is restarted with exponential backoff; scaling tells running workers the new
 * replica count (SIGUSR2 + a rescale file) so they hand shards off without restarting, stops the
 * ordinals past the new count with SIGTERM (they drain, commit and release their leases), and starts
 * new ordinals (which wait for the leases of the shards they receive).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BindingError } from '../bindings/errors.ts';
import { nodeArgs, type WorkerOptions } from '../runtime/index.ts';
import { creditsPerReplica } from './autoscaler.ts';
import type { Driver, WorkloadStatus } from './driver.ts';
import type { LogLine } from './control-plane.ts';
import { toLogLine } from './log-lines.ts';
import { toWorkerOptions, type FunctionSpec } from './spec/index.ts';

const workerMain = fileURLToPath(new URL('../runtime/worker-main.ts', import.meta.url));

/** Options of the local driver. */
export interface LocalDriverOptions {
  /** Directory for worker configs and rescale files. */
  runDir: string;
  /** First restart delay of a crashed worker; doubles up to `maxRestartDelayMs`. @default 500 */
  restartDelayMs?: number;
  /** @default 30000 */
  maxRestartDelayMs?: number;
  /** Lines of worker logs kept per function. @default 2000 */
  logLines?: number;
  /** On a new revision, how long the new workers may take to boot before the old ones are stopped anyway. @default 30000 */
  bootWaitMs?: number;
  /** Extra environment of the workers (secrets are resolved from it). @default process.env */
  env?: NodeJS.ProcessEnv;
  /**
   * The platform's own embedded store: a function whose spec says `backend: local` runs on it (one
   * data directory per local platform), whatever `dir` the spec names. @default the spec's dir
   */
  localDir?: string;
}

interface Replica {
  ordinal: number;
  /** Port of the worker's /metrics (from its ready line). */
  httpPort: number | undefined;
  proc: ChildProcess | undefined;
  ready: boolean;
  restarts: number;
  stopping: boolean;
  exited: Promise<void>;
  timer: NodeJS.Timeout | undefined;
}

interface Workload {
  name: string;
  options: (ordinal: number, replicas: number) => WorkerOptions;
  maxBatchesInFlight: number | undefined;
  replicas: Map<number, Replica>;
  desired: number;
  logs: LogLine[];
  /** The most recent error a worker of this function reported (or its crash), for `sluice status`. */
  lastError: { at: string; message: string; ordinal: number } | undefined;
  /** Restarts of crashed workers since the function was applied. */
  restarts: number;
}

export class LocalDriver implements Driver {
  readonly kind = 'local';
  readonly #o: Required<Omit<LocalDriverOptions, 'env' | 'localDir'>> & { env: NodeJS.ProcessEnv; localDir: string | undefined };
  readonly #workloads = new Map<string, Workload>();
  /** Emits `log` (name, LogLine) and `exit` (name, ordinal, code). */
  readonly events = new EventEmitter();
  #closed = false;

  constructor(options: LocalDriverOptions) {
    this.#o = {
      runDir: options.runDir,
      restartDelayMs: options.restartDelayMs ?? 500,
      maxRestartDelayMs: options.maxRestartDelayMs ?? 30_000,
      logLines: options.logLines ?? 2000,
      bootWaitMs: options.bootWaitMs ?? 30_000,
      env: options.env ?? process.env,
      localDir: options.localDir,
    };
    mkdirSync(this.#o.runDir, { recursive: true });
    this.events.setMaxListeners(0);
  }

  async apply(spec: FunctionSpec, specDir: string): Promise<void> {
    const name = spec.metadata.name;
    const localDir = this.#o.localDir;
    const options = (ordinal: number, replicas: number): WorkerOptions => {
      const o = toWorkerOptions(spec, { specDir, ordinal, replicas, env: this.#o.env });
      return localDir !== undefined && o.backend.kind === 'local' ? { ...o, backend: { kind: 'local', dir: localDir } } : o;
    };
    options(0, 1); // validate now: a bad spec must fail the deploy, not the workers
    const prev = this.#workloads.get(name);
    const w: Workload = { name, options, maxBatchesInFlight: spec.spec.scaling.maxBatchesInFlight, replicas: new Map(), desired: 0, logs: prev?.logs ?? [], lastError: prev?.lastError, restarts: 0 };
    if (prev) {
      // A new revision: the new workers boot while the old ones keep handling records (booting —
      // loader, backend, handler threads — is most of a reload); then the old ones drain, commit and
      // release their leases, and the new ones are woken to take the shards at once.
      w.desired = prev.desired;
      for (let i = 0; i < prev.desired; i++) this.#start(w, i);
      await this.#booted(w, this.#o.bootWaitMs);
      await this.#stopAll(prev);
      this.#workloads.set(name, w);
      for (const r of w.replicas.values()) this.#rescale(w, r);
    } else this.#workloads.set(name, w);
  }

  /** Resolves when every replica of `w` is ready (or has exited), or after `timeoutMs`. */
  async #booted(w: Workload, timeoutMs: number): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end && [...w.replicas.values()].some((r) => !r.ready && r.proc?.exitCode === null && r.proc.signalCode === null)) await new Promise((res) => setTimeout(res, 20));
  }

  async scale(name: string, replicas: number): Promise<void> {
    const w = this.#get(name);
    if (!Number.isInteger(replicas) || replicas < 0) throw new BindingError('SLUICE_INVALID_ARGUMENT', `scale ${name}: replicas must be a non-negative integer`);
    w.desired = replicas;
    // Ordinals past the new count stop first; they release their leases on the way out.
    const leaving = [...w.replicas.values()].filter((r) => r.ordinal >= replicas);
    await Promise.all(leaving.map((r) => this.#stop(w, r)));
    for (const r of w.replicas.values()) this.#rescale(w, r);
    for (let i = 0; i < replicas; i++) if (!w.replicas.has(i)) this.#start(w, i);
  }

  async remove(name: string): Promise<boolean> {
    const w = this.#workloads.get(name);
    if (!w) return false;
    await this.#stopAll(w);
    this.#workloads.delete(name);
    return true;
  }

  async status(name: string): Promise<WorkloadStatus | undefined> {
    const w = this.#workloads.get(name);
    if (!w) return undefined;
    const replicas = [...w.replicas.values()]
      .sort((a, b) => a.ordinal - b.ordinal)
      .map((r) => ({ ordinal: r.ordinal, id: r.proc?.pid !== undefined ? `pid ${r.proc.pid}` : 'restarting', ready: r.ready, restarts: r.restarts }));
    return { desired: w.desired, ready: replicas.filter((r) => r.ready).length, replicas, restarts: w.restarts, ...(w.lastError ? { lastError: w.lastError } : {}) };
  }

  /** Recent log lines of a function's workers. */
  logs(name: string): LogLine[] {
    return [...(this.#workloads.get(name)?.logs ?? [])];
  }

  /** Pids of the running workers of a function, by ordinal (for tests and `sluice status`). */
  pids(name: string): Map<number, number> {
    const out = new Map<number, number>();
    for (const r of this.#workloads.get(name)?.replicas.values() ?? []) if (r.proc?.pid !== undefined && r.proc.exitCode === null) out.set(r.ordinal, r.proc.pid);
    return out;
  }

  /** The /metrics endpoints of the running, ready workers. */
  metricsTargets(): { function: string; ordinal: number; url: string }[] {
    const out: { function: string; ordinal: number; url: string }[] = [];
    for (const w of this.#workloads.values())
      for (const r of w.replicas.values()) if (r.ready && r.httpPort !== undefined) out.push({ function: w.name, ordinal: r.ordinal, url: `http://127.0.0.1:${r.httpPort}` });
    return out;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#workloads.values()].map((w) => this.#stopAll(w)));
  }

  #get(name: string): Workload {
    const w = this.#workloads.get(name);
    if (!w) throw new BindingError('SLUICE_NOT_FOUND', `function '${name}' is not deployed`);
    return w;
  }

  #files(w: Workload, ordinal: number): { config: string; rescale: string } {
    return { config: join(this.#o.runDir, `${w.name}-${ordinal}.json`), rescale: join(this.#o.runDir, `${w.name}-${ordinal}.rescale.json`) };
  }

  #credits(w: Workload, ordinal: number, perWorker: number): number {
    return creditsPerReplica(w.maxBatchesInFlight, Math.max(1, w.desired), ordinal, perWorker);
  }

  #start(w: Workload, ordinal: number): void {
    const r: Replica = { ordinal, httpPort: undefined, proc: undefined, ready: false, restarts: 0, stopping: false, exited: Promise.resolve(), timer: undefined };
    w.replicas.set(ordinal, r);
    this.#spawn(w, r);
  }

  #spawn(w: Workload, r: Replica): void {
    if (this.#closed || r.stopping) return;
    const files = this.#files(w, r.ordinal);
    const o = w.options(r.ordinal, Math.max(1, w.desired));
    const perWorker = o.batchesInFlight ?? Math.max(1, (o.threads ?? 1) * 2);
    // Every worker serves /metrics on a free port of 127.0.0.1; the platform's /metrics merges them (controller/metrics.ts).
    writeFileSync(files.config, JSON.stringify({ ...o, httpPort: o.httpPort ?? 0, batchesInFlight: this.#credits(w, r.ordinal, perWorker) }));
    writeFileSync(files.rescale, JSON.stringify({ replicas: Math.max(1, w.desired), ordinal: r.ordinal }));
    // tsx from sluice's own install (not the cwd's): a project depending on sluice need not depend on tsx.
    const proc = spawn(process.execPath, nodeArgs(workerMain, files.config), {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...this.#o.env, SLUICE_ORDINAL: String(r.ordinal), SLUICE_REPLICAS: String(Math.max(1, w.desired)), SLUICE_RESCALE_FILE: files.rescale },
    });
    r.proc = proc;
    r.ready = false;
    // stdout carries the worker's events (ready) and whatever handlers print (console.log); stderr
    // its pino lines and anything else written there. Both are kept, by line.
    let errorSinceSpawn = false;
    const lines = (stream: NodeJS.ReadableStream, name: 'stdout' | 'stderr', each: (l: string) => void) => {
      let buf = '';
      stream.setEncoding('utf8');
      stream.on('data', (d: string) => {
        buf += d;
        const ls = buf.split('\n');
        buf = ls.pop()!;
        for (const l of ls) each(l);
      });
      stream.on('end', () => buf && this.#log(w, r.ordinal, buf, name));
    };
    lines(proc.stdout!, 'stdout', (l) => {
      if (l.startsWith('{"event":"ready"')) {
        r.ready = true;
        const port = (JSON.parse(l) as { httpPort?: unknown }).httpPort;
        r.httpPort = typeof port === 'number' ? port : undefined;
      }
      else this.#log(w, r.ordinal, l, 'stdout');
    });
    lines(proc.stderr!, 'stderr', (l) => {
      if (this.#log(w, r.ordinal, l, 'stderr')) errorSinceSpawn = true;
    });
    r.exited = new Promise((resolve) =>
      proc.once('exit', (code, signal) => {
        r.ready = false;
        this.events.emit('exit', w.name, r.ordinal, code ?? signal);
        if (!r.stopping && !this.#closed) {
          // Crashed or killed: restart with backoff so a crash loop cannot spin the machine.
          const delay = Math.min(this.#o.maxRestartDelayMs, this.#o.restartDelayMs * 2 ** Math.min(r.restarts, 10));
          r.restarts++;
          w.restarts++;
          // The worker's own last error says why; the exit notice only when it said nothing.
          const keep = errorSinceSpawn ? w.lastError : undefined;
          this.#log(w, r.ordinal, JSON.stringify({ level: 50, msg: `worker exited (${code ?? signal}); restarting in ${delay} ms`, time: Date.now() }), 'driver');
          if (keep) w.lastError = keep;
          r.timer = setTimeout(() => this.#spawn(w, r), delay);
        }
        resolve();
      }),
    );
  }

  #rescale(w: Workload, r: Replica): void {
    const files = this.#files(w, r.ordinal);
    const o = w.options(r.ordinal, Math.max(1, w.desired));
    const perWorker = o.batchesInFlight ?? Math.max(1, (o.threads ?? 1) * 2);
    writeFileSync(files.rescale, JSON.stringify({ replicas: Math.max(1, w.desired), ordinal: r.ordinal, batchesInFlight: this.#credits(w, r.ordinal, perWorker) }));
    if (r.proc && r.proc.exitCode === null) r.proc.kill('SIGUSR2');
  }

  async #stop(w: Workload, r: Replica): Promise<void> {
    r.stopping = true;
    if (r.timer) clearTimeout(r.timer);
    if (r.proc && r.proc.exitCode === null && r.proc.signalCode === null) r.proc.kill('SIGTERM');
    await r.exited;
    w.replicas.delete(r.ordinal);
  }

  async #stopAll(w: Workload): Promise<void> {
    await Promise.all([...w.replicas.values()].map((r) => this.#stop(w, r)));
  }

  /** Keeps one line of a worker; true when it is an error (level error or fatal). */
  #log(w: Workload, ordinal: number, raw: string, stream: 'stdout' | 'stderr' | 'driver'): boolean {
    const line = toLogLine(raw, ordinal, stream);
    if (!line) return false;
    const isError = line.level === 'error' || line.level === 'fatal';
    if (isError) {
      const err = line.fields.err as { message?: unknown } | undefined;
      const detail = typeof err?.message === 'string' && !line.message.includes(err.message) ? `: ${err.message}` : '';
      w.lastError = { at: line.at, message: `${line.message}${detail}`, ordinal };
    }
    w.logs.push(line);
    if (w.logs.length > this.#o.logLines) w.logs.splice(0, w.logs.length - this.#o.logLines);
    this.events.emit('log', w.name, line);
    return isError;
  }
}
