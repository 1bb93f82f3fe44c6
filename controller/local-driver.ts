/**
 * The `local` driver: worker processes on this machine, one per ordinal 0..R-1 of each function.
 * A worker that dies is restarted with exponential backoff; scaling tells running workers the new
 * replica count (SIGUSR2 + a rescale file) so they hand shards off without restarting, stops the
 * ordinals past the new count with SIGTERM (they drain, commit and release their leases), and starts
 * new ordinals (which wait for the leases of the shards they receive).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { EventEmitter } from 'node:events';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BindingError } from '../bindings/errors.ts';
import { nodeArgs, type WorkerOptions } from '../runtime/index.ts';
import { creditsPerReplica } from './autoscaler.ts';
import type { ApplyOptions, Driver, RolloutPhases, WorkloadStatus } from './driver.ts';
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
  /**
   * Platform generation given to the workers (see WorkerOptions.generation): a restarted platform
   * fences the workers of the one before. @default 0 (no fencing)
   */
  generation?: number;
  /** A worker that ran this long before it died restarts after `restartDelayMs` again (its backoff resets). @default 10000 */
  healthyAfterMs?: number;
  /** How long an orphan (a worker of an earlier platform found by its pid file) gets to drain after SIGTERM before SIGKILL. @default 10000 */
  orphanGraceMs?: number;
}

/** What a pid file `<runDir>/<fn>-<ordinal>.pid` holds: enough to find and stop a worker started by another platform process. */
interface PidFile {
  pid: number;
  function: string;
  ordinal: number;
  generation: number;
}

interface Replica {
  ordinal: number;
  /** Port of the worker's /metrics (from its ready line). */
  httpPort: number | undefined;
  proc: ChildProcess | undefined;
  ready: boolean;
  restarts: number;
  /** Crashes in a row without a healthy run in between: the exponent of the restart backoff. */
  streak: number;
  startedAt: number;
  /** The worker printed its `signals` line: SIGUSR2 no longer kills it. */
  signals: boolean;
  rescalePending: boolean;
  stopping: boolean;
  /** Called when the worker says it drained and released its leases (its `drained` line) while stopping. */
  onDrained: (() => void) | undefined;
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
  /** Which `process.pid` this driver's workers watch (parent-death detection). */
  readonly #parentPid = process.pid;
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
      generation: options.generation ?? 0,
      healthyAfterMs: options.healthyAfterMs ?? 10_000,
      orphanGraceMs: options.orphanGraceMs ?? 10_000,
    };
    // Run files hold resolved secrets (backend tokens): only this user may read them.
    mkdirSync(this.#o.runDir, { recursive: true, mode: 0o700 });
    chmodSync(this.#o.runDir, 0o700);
    this.events.setMaxListeners(0);
  }

  async apply(spec: FunctionSpec, specDir: string, ao: ApplyOptions = {}): Promise<RolloutPhases | void> {
    const name = spec.metadata.name;
    const localDir = this.#o.localDir;
    const options = (ordinal: number, replicas: number): WorkerOptions => {
      const o = { ...toWorkerOptions(spec, { specDir, ordinal, replicas, env: this.#o.env }), generation: this.#o.generation };
      return localDir !== undefined && o.backend.kind === 'local' ? { ...o, backend: { kind: 'local', dir: localDir } } : o;
    };
    options(0, 1); // validate now: a bad spec must fail the deploy, not the workers
    const prev = this.#workloads.get(name);
    const w: Workload = { name, options, maxBatchesInFlight: spec.spec.scaling.maxBatchesInFlight, replicas: new Map(), desired: 0, logs: prev?.logs ?? [], lastError: prev?.lastError, restarts: 0 };
    if (!prev) {
      await ao.gate;
      this.#workloads.set(name, w);
      return;
    }
    // A new revision: the new workers boot while the old ones keep handling records (booting — loader,
    // backend, handler threads — is most of a reload), and while the controller's sandbox loads the new
    // code (the gate); then the old ones drain, commit and release their leases, and each release wakes
    // the new ones, which take the shards at once (not when the old process has closed and exited).
    const t0 = Date.now();
    let bootMs = 0;
    w.desired = prev.desired;
    for (let i = 0; i < prev.desired; i++) this.#start(w, i);
    try {
      await Promise.all([this.#booted(w, this.#o.bootWaitMs).then(() => (bootMs = Date.now() - t0)), ao.gate]);
    } catch (e) {
      // Refused (the sandbox did not load it): its workers go, the running revision stays as it was.
      await this.#stopAll(w);
      for (const r of prev.replicas.values()) this.#writePid(prev, r);
      throw e;
    }
    const t1 = Date.now();
    let releasedMs: number | undefined;
    const wake = () => {
      releasedMs ??= Date.now() - t1;
      for (const r of w.replicas.values()) this.#rescale(w, r);
    };
    for (const r of prev.replicas.values()) r.onDrained = wake;
    await this.#stopAll(prev);
    const exitMs = Date.now() - t1;
    this.#workloads.set(name, w);
    for (const r of w.replicas.values()) this.#rescale(w, r);
    return { 'new workers ready': bootMs, 'waited for the sandbox': t1 - t0 - bootMs, 'old drained and released': releasedMs ?? exitMs, 'old exited': exitMs };
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
    // Workers of this function that an earlier platform process started (found by pid file) stop too.
    const orphans = this.reapOrphans(name);
    if (!w) {
      const found = (await orphans) > 0;
      this.#removeRunFiles(name);
      return found;
    }
    await this.#stopAll(w);
    await orphans;
    this.#workloads.delete(name);
    this.#removeRunFiles(name);
    return true;
  }

  /**
   * Sends `socket` (with `message`) to the running worker process `pid` over its IPC channel: the HTTP
   * ingress's connection hand-off (runtime/triggers/http-handoff.ts). False when `pid` is not one of this
   * driver's live workers (the caller then serves the connection itself); the socket is then untouched.
   */
  sendHandle(pid: number, message: object, socket: Socket): boolean {
    for (const w of this.#workloads.values())
      for (const r of w.replicas.values()) {
        const p = r.proc;
        if (p?.pid !== pid || !r.ready || r.stopping || !p.connected) continue;
        try {
          // send() answers false when its backlog is long, but the message (and the socket) is queued
          // all the same: the socket is no longer ours either way.
          p.send(message, socket, { keepOpen: false }, (e) => {
            // Queued but not delivered (the worker exited meanwhile): the client sees the connection close.
            if (e) socket.destroy();
          });
          return true;
        } catch {
          return false;
        }
      }
    return false;
  }

  /**
   * Stops workers that a previous platform process started and that still run (pid files in the run
   * directory whose process is alive, is a sluice worker, and is not ours): SIGTERM to its process
   * group, SIGKILL after `orphanGraceMs`. Only `fn`'s workers when given. Returns how many it stopped.
   */
  async reapOrphans(fn?: string): Promise<number> {
    const mine = new Set<number>();
    for (const w of this.#workloads.values()) for (const r of w.replicas.values()) if (r.proc?.pid !== undefined) mine.add(r.proc.pid);
    const victims: { file: string; pid: number }[] = [];
    for (const f of existsSync(this.#o.runDir) ? readdirSync(this.#o.runDir) : []) {
      if (!f.endsWith('.pid')) continue;
      const file = join(this.#o.runDir, f);
      let p: PidFile;
      try {
        p = JSON.parse(readFileSync(file, 'utf8')) as PidFile;
      } catch {
        continue;
      }
      if ((fn !== undefined && p.function !== fn) || mine.has(p.pid)) continue;
      if (isSluiceWorker(p.pid)) victims.push({ file, pid: p.pid });
      else rmSync(file, { force: true });
    }
    await Promise.all(
      victims.map(async ({ file, pid }) => {
        signalGroup(pid, 'SIGTERM');
        const end = Date.now() + this.#o.orphanGraceMs;
        while (isSluiceWorker(pid) && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
        if (isSluiceWorker(pid)) signalGroup(pid, 'SIGKILL');
        rmSync(file, { force: true });
      }),
    );
    return victims.length;
  }

  #removeRunFiles(fn: string): void {
    for (const f of existsSync(this.#o.runDir) ? readdirSync(this.#o.runDir) : []) {
      const m = /^(.*)-(\d+)(\.rescale\.json|\.json|\.pid)$/.exec(f);
      if (m?.[1] === fn) rmSync(join(this.#o.runDir, f), { force: true });
    }
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

  #files(w: Workload, ordinal: number): { config: string; rescale: string; pid: string } {
    const base = join(this.#o.runDir, `${w.name}-${ordinal}`);
    return { config: `${base}.json`, rescale: `${base}.rescale.json`, pid: `${base}.pid` };
  }

  #credits(w: Workload, ordinal: number, perWorker: number): number {
    return creditsPerReplica(w.maxBatchesInFlight, Math.max(1, w.desired), ordinal, perWorker);
  }

  #start(w: Workload, ordinal: number): void {
    const r: Replica = { ordinal, httpPort: undefined, proc: undefined, ready: false, restarts: 0, streak: 0, startedAt: 0, signals: false, rescalePending: false, stopping: false, onDrained: undefined, exited: Promise.resolve(), timer: undefined };
    w.replicas.set(ordinal, r);
    this.#spawn(w, r);
  }

  #spawn(w: Workload, r: Replica): void {
    if (this.#closed || r.stopping) return;
    const files = this.#files(w, r.ordinal);
    const o = w.options(r.ordinal, Math.max(1, w.desired));
    const perWorker = o.batchesInFlight ?? Math.max(1, (o.threads ?? 1) * 2);
    // The config may hold the handler's secrets (0600). The backend token travels in the worker's
    // environment (readable only by this user, gone with the process), never in the run file: a config on
    // disk outlives the worker, a crash, or a backup.
    const secretEnv: NodeJS.ProcessEnv = {};
    let fileOptions: WorkerOptions = o;
    if (o.backend.kind === 'nats' && (o.backend.token !== undefined || o.backend.pass !== undefined)) {
      const { token, pass, ...rest } = o.backend;
      // Read (and removed from its env) by runtime/worker-main.ts.
      if (token !== undefined) secretEnv.SLUICE_BACKEND_TOKEN = token;
      if (pass !== undefined) secretEnv.SLUICE_BACKEND_PASSWORD = pass;
      fileOptions = { ...o, backend: rest };
    }
    // Every worker serves /metrics on a free port of 127.0.0.1; the platform's /metrics merges them (controller/metrics.ts).
    writeFileSync(files.config, JSON.stringify({ ...fileOptions, httpPort: o.httpPort ?? 0, batchesInFlight: this.#credits(w, r.ordinal, perWorker) }), { mode: 0o600 });
    writeFileSync(files.rescale, JSON.stringify({ replicas: Math.max(1, w.desired), ordinal: r.ordinal }), { mode: 0o600 });
    // tsx from sluice's own install (not the cwd's): a project depending on sluice need not depend on tsx.
    const proc = spawn(process.execPath, nodeArgs(workerMain, files.config), {
      // stdin stays an open pipe: it closes when this process dies, however it dies (parent-death detection).
      // fd 3: an IPC channel, over which the HTTP ingress hands connections to the worker (sendHandle).
      stdio: ['pipe', 'pipe', 'pipe', 'ipc'],
      // Own process group: stopping a worker (or an orphan) reaches whatever its handlers spawned.
      detached: true,
      env: { ...this.#o.env, SLUICE_ORDINAL: String(r.ordinal), SLUICE_REPLICAS: String(Math.max(1, w.desired)), SLUICE_RESCALE_FILE: files.rescale, SLUICE_PARENT_PID: String(this.#parentPid), ...secretEnv },
    });
    r.proc = proc;
    r.ready = false;
    r.signals = false;
    r.startedAt = Date.now();
    this.#writePid(w, r);
    proc.stdin!.on('error', () => undefined);
    // stdout carries the worker's events (signals, ready) and whatever handlers print (console.log); stderr
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
      if (l.startsWith('{"event":"signals"')) {
        // From now on the worker handles SIGUSR2: a rescale asked while it started is sent now.
        r.signals = true;
        if (r.rescalePending) {
          r.rescalePending = false;
          proc.kill('SIGUSR2');
        }
      } else if (l.startsWith('{"event":"drained"')) r.onDrained?.();
      else if (l.startsWith('{"event":"ready"')) {
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
        // During a rollout the new worker of this ordinal has written the pid file already: keep its.
        if ((r.stopping || this.#closed) && readPid(files.pid) === proc.pid) rmSync(files.pid, { force: true });
        if (!r.stopping && !this.#closed) {
          // Crashed or killed: restart with backoff so a crash loop cannot spin the machine; a worker
          // that had run healthily for a while starts a new streak (kills 25 s apart must not reach 30 s).
          if (Date.now() - r.startedAt >= this.#o.healthyAfterMs) r.streak = 0;
          const delay = Math.min(this.#o.maxRestartDelayMs, this.#o.restartDelayMs * 2 ** Math.min(r.streak, 10));
          r.streak++;
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

  /** Writes the pid file of a running replica (a new worker of the same ordinal overwrites it during a rollout). */
  #writePid(w: Workload, r: Replica): void {
    const pid = r.proc?.pid;
    if (pid === undefined || r.proc?.exitCode !== null) return;
    writeFileSync(this.#files(w, r.ordinal).pid, JSON.stringify({ pid, function: w.name, ordinal: r.ordinal, generation: this.#o.generation } satisfies PidFile), { mode: 0o600 });
  }

  #rescale(w: Workload, r: Replica): void {
    const files = this.#files(w, r.ordinal);
    const o = w.options(r.ordinal, Math.max(1, w.desired));
    const perWorker = o.batchesInFlight ?? Math.max(1, (o.threads ?? 1) * 2);
    writeFileSync(files.rescale, JSON.stringify({ replicas: Math.max(1, w.desired), ordinal: r.ordinal, batchesInFlight: this.#credits(w, r.ordinal, perWorker) }), { mode: 0o600 });
    if (!r.proc || r.proc.exitCode !== null || r.proc.signalCode !== null) return;
    // Before its `signals` line the worker may not have its handler yet (SIGUSR2 would kill it): it
    // reads the rescale file when it is ready, and gets the signal then in case it was already past that.
    if (r.signals) r.proc.kill('SIGUSR2');
    else r.rescalePending = true;
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
    // Native code writes to the same stderr without a newline (lmdb on a full disk: "Write error: No
    // space left on device position …" once per page), which ran into the next JSON line and garbled
    // it. Keep the native text as a line of its own and parse the JSON that follows it.
    const json = raw.indexOf('{"level":');
    if (json > 0) {
      const native = raw.slice(0, json).trim();
      this.#push(w, { at: new Date().toISOString(), ordinal, level: 'warn', message: `${RAW_PREFIX}${native.length > 500 ? `${native.slice(0, 500)}…` : native}`, fields: { stream } });
      raw = raw.slice(json);
    }
    const line = toLogLine(raw, ordinal, stream);
    if (!line) return false;
    const isError = line.level === 'error' || line.level === 'fatal';
    if (isError) {
      const err = line.fields.err as { message?: unknown } | undefined;
      const detail = typeof err?.message === 'string' && !line.message.includes(err.message) ? `: ${err.message}` : '';
      w.lastError = { at: line.at, message: `${line.message}${detail}`, ordinal };
    }
    this.#push(w, line);
    return isError;
  }

  #push(w: Workload, line: LogLine): void {
    w.logs.push(line);
    if (w.logs.length > this.#o.logLines) w.logs.splice(0, w.logs.length - this.#o.logLines);
    this.events.emit('log', w.name, line);
  }
}

/** True when `pid` is alive and runs sluice's worker entry (a recycled pid of another program is left alone). */
function isSluiceWorker(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmd.includes('worker-main');
  } catch {
    // No /proc (macOS): the pid is alive; trust the pid file.
    return true;
  }
}

/** The pid a pid file names, or undefined when it is gone or unreadable. */
function readPid(file: string): number | undefined {
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as PidFile).pid;
  } catch {
    return undefined;
  }
}

/** Signals a worker's process group (it leads one: spawned detached), else the process alone. */
function signalGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  }
}

/** Prefix of a log line that was not one of the worker's JSON lines (kept, marked, on a line of its own). */
export const RAW_PREFIX = 'stderr: ';

