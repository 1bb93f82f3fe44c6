/**
 * A worker: owns the shards `assign(S, R, ordinal)` gives it (plus their leases), runs one
 * {@link ShardRunner} per owned shard, shares batch credits and handler threads among them, and serves
 * /metrics, /healthz, /readyz.
 *
 * Lifecycle: starting → running → draining → stopped (or failed). Draining stops fetching, lets batches
 * in flight finish and commit, releases leases; past `shutdownGraceMs` the worker stops anyway.
 * Handoff on scaling (DESIGN invariant 4): a shard leaving this worker is drained, committed and its
 * lease released before the new owner (which waits for the lease) starts pulling.
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { Counter, Gauge } from 'prom-client';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { BindingError, SluiceError } from '../bindings/errors.ts';
import { mappingOf } from '../bindings/error-table.ts';
import type { Backend, KvBinding, ObjectBinding, StreamBinding } from '../bindings/types.ts';
import { assign } from './assign.ts';
import { openBackend } from './backend-spec.ts';
import { startHttp } from './http.ts';
import { WorkerMetrics } from './metrics.ts';
import { Committer } from './committer.ts';
import { EffectWriter } from './effect-writes.ts';
import { StreamRecordSource } from './records.ts';
import { InlineRunner, workerLogger, type HandlerRunner } from './runner.ts';
import { Semaphore } from './semaphore.ts';
import { sleep } from './batcher.ts';
import { ShardRunner, type ShardDeps } from './shard-runner.ts';
import { Leases, openStateTable, readGeneration, StateReader } from './state.ts';
import { CronTicker } from './triggers/cron.ts';
import { QueryScheduler } from './triggers/query.ts';
import { HttpTriggerServer } from './triggers/http.ts';
import type { HttpHandOff } from './triggers/http-handoff.ts';
import { resolveWorkerOptions, type ResolvedWorkerOptions, type WorkerOptions } from './worker-options.ts';

/** Worker lifecycle states. */
export type WorkerState = 'starting' | 'running' | 'draining' | 'stopped' | 'failed';

/** Opens the handler runner: threads over shared memory, or the main thread when `threads` is 0. */
export type RunnerFactory = (o: ResolvedWorkerOptions, backend: Backend, log: Logger) => Promise<HandlerRunner>;

/** Extra wiring for embedding and tests. */
export interface WorkerHooks {
  /** How handlers run. @default HandlerPool for threads > 0, InlineRunner for 0 */
  runner?: RunnerFactory;
  /** Logger. @default pino JSON lines on stderr */
  log?: Logger;
  /**
   * Opens the worker's backend (its state table, trigger source and commits go through it) — e.g. a
   * wrapper that injects store faults in tests. Handler threads open their own. @default openBackend(options.backend)
   */
  openBackend?: (spec: ResolvedWorkerOptions['backend']) => Promise<Backend>;
  /**
   * Called once when a newer platform generation is seen (options.generation > 0): the worker has
   * stopped owning shards and should exit (worker-main stops and exits). @default stop the worker
   */
  onFenced?: () => void;
  /**
   * Called once by `stop()` when the batches in flight have committed and the leases are released,
   * before handler threads and the backend close (which takes hundreds of ms): the local driver wakes the
   * shards' next owners then — a reload's new workers — instead of when this process has exited.
   * @default none
   */
  onDrained?: () => void;
}

export class Worker {
  readonly options: ResolvedWorkerOptions;
  readonly metrics: WorkerMetrics;
  readonly log: Logger;
  #state: WorkerState = 'starting';
  #backend: Backend | undefined;
  #runner: HandlerRunner | undefined;
  #leases: Leases | undefined;
  #deps: ShardDeps | undefined;
  #reader: StateReader | undefined;
  #shards = 0;
  #replicas: number;
  #ordinal: number;
  #runners = new Map<number, ShardRunner>();
  #loop: Promise<void> = Promise.resolve();
  #wake: (() => void) | undefined;
  /** A wake-up asked while a round ran (no sleep to cut short): the next sleep is skipped. */
  #wakeAsked = false;
  #http: { server: Server; port: number } | undefined;
  #ticker: CronTicker | undefined;
  #scheduler: QueryScheduler | undefined;
  #http2: HttpTriggerServer | undefined;
  #fenced = false;
  readonly #hooks: WorkerHooks;

  private constructor(o: ResolvedWorkerOptions, hooks: WorkerHooks) {
    this.options = o;
    this.#hooks = hooks;
    this.#replicas = o.replicas;
    this.#ordinal = o.ordinal;
    this.metrics = new WorkerMetrics(o.function);
    this.log = hooks.log ?? workerLogger(o);
  }

  /** Validates options, opens backend, handler threads and HTTP server, and starts owning shards. */
  static async start(options: WorkerOptions, hooks: WorkerHooks = {}): Promise<Worker> {
    const w = new Worker(resolveWorkerOptions(options, hostname()), hooks);
    try {
      await w.#open();
    } catch (e) {
      w.#state = 'failed';
      await w.#closeResources();
      throw e;
    }
    return w;
  }

  get state(): WorkerState {
    return this.#state;
  }

  /** Port of the HTTP server (undefined when disabled). */
  get httpPort(): number | undefined {
    return this.#http?.port;
  }

  /** Shards this worker currently runs. */
  get ownedShards(): number[] {
    return [...this.#runners.keys()].sort((a, b) => a - b);
  }

  #transition(to: WorkerState): void {
    this.log.info({ from: this.#state, to }, 'worker state');
    this.#state = to;
  }

  async #open(): Promise<void> {
    const o = this.options;
    this.#backend = await (this.#hooks.openBackend ?? openBackend)(o.backend);
    const backend = this.#backend;
    const state: KvBinding = await openStateTable(backend);
    const streams: StreamBinding = backend.streams();
    let stream: string;
    let objects: ObjectBinding | undefined;
    if (o.trigger.type === 'object') {
      objects = await backend.objects(o.trigger.bucket);
      const info = await objects.info();
      if (o.trigger.feed !== undefined) {
        // A scheduled query trigger reads its run stream (change records of this bucket) instead.
        stream = o.trigger.feed;
        await createIfMissing(streams, stream, 1);
        this.#shards = (await streams.info(stream)).shards;
      } else {
        stream = info.changeStream;
        this.#shards = info.shards;
      }
    } else if (o.trigger.type === 'stream') {
      stream = o.trigger.stream;
      // A cron trigger's tick stream belongs to the function: whoever starts first creates it.
      if (o.trigger.cron !== undefined) await createIfMissing(streams, stream, 1);
      this.#shards = (await streams.info(stream)).shards;
    } else {
      // An HTTP trigger owns no shards: requests arrive through its HTTP server (started below).
      stream = '';
      this.#shards = 0;
    }
    await createIfMissing(streams, o.retries.deadLetterStream, 1);
    // An HTTP trigger runs its handler on its own request threads (runtime/triggers/http.ts), not batches.
    if (o.trigger.type !== 'http') this.#runner = await (this.#hooks.runner ?? defaultRunner)(o, backend, this.log);
    this.#leases = new Leases(state, o.function, o.id, o.leaseTtlMs, o.generation);
    const source = new StreamRecordSource(o, streams, stream, objects);
    const effects = new EffectWriter(o.function, o.bindings, backend, this.log);
    const committer = new Committer({ function: o.function, backend, objects, metrics: this.metrics, log: this.log, effects });
    this.#reader = new StateReader(state);
    if (this.#runner) this.#deps = { o, streams, state, source, committer, runner: this.#runner, credits: new Semaphore(o.batchesInFlight), metrics: this.metrics, log: this.log };
    if (o.httpPort >= 0) {
      this.#http = await startHttp(
        this.metrics,
        {
          healthy: () => this.#state !== 'failed',
          ready: () => this.#state === 'running',
          status: () => this.status(),
        },
        o.httpPort,
        o.httpHost,
      );
    }
    if (o.trigger.type === 'http') this.#http2 = await HttpTriggerServer.start({ o, trigger: o.trigger, state, log: this.log.child({ trigger: 'http' }), registry: this.metrics.registry });
    this.#transition('running');
    if (this.#shards > 0) this.#loop = this.#ownership();
    if (o.trigger.type === 'stream' && o.trigger.cron !== undefined) {
      // Every replica ticks; conditional appends make one tick per instant (runtime/triggers/cron.ts).
      const reader = this.#reader;
      this.#ticker = new CronTicker({
        streams,
        stream,
        cron: o.trigger.cron,
        busy: async (seq) => {
          const c = await reader.checkpoint(o.function, 0);
          return c === undefined || c.seq <= seq || c.pending.length > 0;
        },
        log: this.log.child({ trigger: 'cron' }),
      });
      this.#ticker.start();
    }
    if (o.trigger.type === 'object' && o.trigger.query !== undefined && objects !== undefined) {
      // Every replica schedules; chained appends put each selected object in the run stream once.
      const r = [this.metrics.registry];
      const metrics = {
        runs: new Counter({ name: 'sluice_query_runs_total', help: 'Scheduled query runs finished (by this worker)', labelNames: ['function'], registers: r }),
        matched: new Counter({ name: 'sluice_query_matched_total', help: 'Objects selected by scheduled query runs (appended by this worker)', labelNames: ['function'], registers: r }),
        lastFinished: new Gauge({ name: 'sluice_query_run_last_finished_seconds', help: 'When the last run this worker finished ended (unix seconds)', labelNames: ['function'], registers: r }),
      };
      this.#scheduler = new QueryScheduler({ function: o.function, objects, streams, stream, state, query: o.trigger.query, log: this.log.child({ trigger: 'query' }), metrics });
      this.#scheduler.start();
    }
  }

  /** A status document: state, shards with their checkpoint position and pending records. */
  status(): {
    state: WorkerState;
    ordinal: number;
    replicas: number;
    /** Per shard: position, pending records, what the runner does now, and when it last finished a step / moved (epoch ms). */
    shards: { shard: number; state: string; seq?: number; pending?: number; epoch: number; phase: string; lastStepAt: number; lastAdvanceAt: number }[];
  } {
    return {
      state: this.#state,
      ordinal: this.#ordinal,
      replicas: this.#replicas,
      shards: [...this.#runners.values()].map((r) => {
        const c = r.checkpoint;
        const b = r.busy();
        return { shard: r.shard, state: r.state, epoch: r.lease.epoch, phase: b.phase, lastStepAt: b.lastStepAt, lastAdvanceAt: b.lastAdvanceAt, ...(c ? { seq: c.seq, pending: c.pending.length } : {}) };
      }),
    };
  }

  /**
   * Changes the replica count (and ordinal, and this worker's share of the function's batch credits):
   * shards that move away are drained and released.
   */
  rescale(replicas: number, ordinal = this.#ordinal, batchesInFlight?: number): void {
    if (!Number.isInteger(replicas) || replicas < 1 || !Number.isInteger(ordinal) || ordinal < 0 || ordinal >= replicas)
      throw new BindingError('SLUICE_INVALID_ARGUMENT', `rescale: ordinal ${ordinal} must be in 0..${replicas - 1}`);
    if (batchesInFlight !== undefined) this.#deps?.credits.resize(batchesInFlight);
    this.#replicas = replicas;
    this.#ordinal = ordinal;
    this.#wakeUp();
  }

  /**
   * Cuts the ownership loop's sleep short — or, when a round is running, makes the next sleep zero: a
   * wake-up that arrived mid-round (a rescale, a released lease during a reload) was lost before, and the
   * shards it was about waited a whole ttl/3 (3.3 s with the default lease).
   */
  #wakeUp(): void {
    if (this.#wake) this.#wake();
    else this.#wakeAsked = true;
  }

  /** Keeps the owned set equal to assign(): acquires, renews and releases leases every ttl/3. */
  async #ownership(): Promise<void> {
    const o = this.options;
    while (this.#state === 'running') {
      try {
        await this.#reconcile();
      } catch (e) {
        this.log.warn({ err: e }, 'ownership round failed');
      }
      this.metrics.ownedShards.set(this.#runners.size);
      this.metrics.slotsInUse.set(this.#runner?.occupancy.inUse ?? 0);
      if (this.#wakeAsked) {
        this.#wakeAsked = false;
        continue;
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(100, Math.floor(o.leaseTtlMs / 3)));
        this.#wake = () => (clearTimeout(t), resolve());
      });
      this.#wake = undefined;
    }
  }

  async #reconcile(): Promise<void> {
    if (this.options.generation > 0) {
      // A restarted platform bumped the generation: this worker is an orphan of the previous one.
      const g = await readGeneration(this.#deps!.state);
      if (g > this.options.generation) {
        this.log.warn({ generation: this.options.generation, current: g }, 'fenced: a newer platform generation runs this function; stopping');
        if (!this.#fenced) {
          this.#fenced = true;
          // Not awaited here: stop() waits for this very loop to end.
          queueMicrotask(this.#hooks.onFenced ?? (() => void this.stop()));
        }
        return;
      }
    }
    // The controller publishes the live replica count in the state table: a pod started or kept by a
    // scale operation learns it here without a restart (its environment may be stale).
    const live = (await this.#reader!.replicas(this.options.function))?.replicas;
    if (live !== undefined && live !== this.#replicas) {
      this.log.info({ from: this.#replicas, to: live }, 'replica count changed');
      this.#replicas = live;
    }
    // An ordinal past the count is on its way out: it owns nothing (its shards drain below).
    const desired = new Set(this.#ordinal < this.#replicas ? assign(this.#shards, this.#replicas, this.#ordinal) : []);
    const leases = this.#leases!;
    // The stall watchdog: a runner whose step outlasts the bound is given up and replaced below (the new
    // lease epoch fences anything the stuck one might still write).
    const stallMs = this.options.timeoutMs + STALL_MARGIN_MS;
    for (const [s, r] of this.#runners) {
      const b = r.busy();
      if ((r.state === 'running' || r.state === 'starting') && b.ms > stallMs) {
        this.log.error({ shard: s, phase: b.phase, stalledMs: b.ms, boundMs: stallMs, lastStepAt: new Date(b.lastStepAt).toISOString() }, 'shard stalled; replacing its runner');
        this.metrics.shardStalls.inc();
        r.abandon();
        this.#runners.delete(s);
      }
    }
    // Drop runners that ended (lease lost, failure); they are retried below if still desired.
    for (const [s, r] of this.#runners) {
      if (r.state === 'lost' || r.state === 'failed' || r.state === 'stopped') {
        this.#runners.delete(s);
        if (r.state !== 'lost') await leases.release(r.lease).catch(() => undefined);
      }
    }
    // Shards that moved away: drain (the batch in flight commits), then release so the new owner starts.
    const leaving = [...this.#runners.values()].filter((r) => !desired.has(r.shard));
    await Promise.all(
      leaving.map(async (r) => {
        await this.#stopRunner(r);
        this.#runners.delete(r.shard);
        if (r.state !== 'lost') await leases.release(r.lease);
        this.log.info({ shard: r.shard }, 'shard handed off');
      }),
    );
    for (const r of this.#runners.values()) {
      if (!(await leases.renew(r.lease))) {
        this.log.warn({ shard: r.shard }, 'lease renewal failed; stopping shard');
        await this.#stopRunner(r);
        this.#runners.delete(r.shard);
      }
    }
    for (const s of desired) {
      if (this.#runners.has(s) || this.#state !== 'running') continue;
      const lease = await leases.acquire(s);
      if (!lease) continue;
      const r = new ShardRunner(this.#deps!, s, lease);
      this.#runners.set(s, r);
      r.start();
      this.log.info({ shard: s, epoch: lease.epoch }, 'shard acquired');
    }
  }

  /** Stops a runner, giving it up when its drain outlasts the stall bound (the ownership loop must go on). */
  async #stopRunner(r: ShardRunner): Promise<void> {
    const bound = this.options.timeoutMs + STALL_MARGIN_MS;
    const ac = new AbortController();
    const drained = await Promise.race([r.stop().then(() => true), sleep(bound, ac.signal).then(() => false)]);
    ac.abort();
    if (!drained) {
      this.log.error({ shard: r.shard, phase: r.busy().phase, boundMs: bound }, 'shard did not drain within the stall bound; giving it up');
      r.abandon();
    }
  }

  /**
   * A connection the platform's ingress handed to this process (runtime/triggers/http-handoff.ts): served
   * by this worker's HTTP trigger; closed when it has none (the ingress then sees the connection reset).
   */
  adoptHttpConnection(socket: Socket, m: HttpHandOff): void {
    if (this.#http2) this.#http2.adopt(socket, m);
    else socket.destroy();
  }

  /**
   * Graceful stop: no new fetches, in-flight batches finish and commit, leases are released. Resolves
   * true when everything finished within the grace period, false when the deadline cut it short.
   */
  async stop(): Promise<boolean> {
    if (this.#state === 'stopped' || this.#state === 'draining') return true;
    this.#transition('draining');
    this.#wake?.();
    await this.#ticker?.close();
    await this.#scheduler?.close();
    // Requests in flight finish (the server stops accepting first); then the threads go.
    await this.#http2?.close();
    const drain = (async () => {
      await this.#loop;
      await Promise.all([...this.#runners.values()].map((r) => r.stop()));
      await Promise.all([...this.#runners.values()].filter((r) => r.state !== 'lost').map((r) => this.#leases!.release(r.lease).catch(() => undefined)));
      this.#runners.clear();
      this.#hooks.onDrained?.();
      return true;
    })();
    const clean = await Promise.race([drain, sleep(this.options.shutdownGraceMs).then(() => false)]);
    if (!clean) this.log.warn({ graceMs: this.options.shutdownGraceMs }, 'shutdown grace passed; stopping with work in flight');
    await this.#closeResources();
    this.#transition('stopped');
    return clean;
  }

  async #closeResources(): Promise<void> {
    await this.#ticker?.close().catch(() => undefined);
    await this.#scheduler?.close().catch(() => undefined);
    await this.#http2?.close().catch(() => undefined);
    await this.#runner?.close().catch(() => undefined);
    if (this.#http) await new Promise<void>((r) => this.#http!.server.close(() => r()));
    await this.#backend?.close().catch(() => undefined);
  }
}

/**
 * The stall bound past the handler timeout: a step that runs longer than `timeout + this` is a defect
 * (every backend call has its own timeout: a pull ≤ its wait + 3 s + a 5 s probe, a KV write ≤ 3 × 5 s
 * plus backoff), and its shard gets a new runner.
 */
export const STALL_MARGIN_MS = 60_000;

/** How long a worker keeps trying to create a stream it needs while the backend is unavailable. */
const CREATE_STREAM_MS = 60_000;

/**
 * Creates a stream the worker needs; one that exists already is fine. On a cluster, creating an R3
 * stream can outlast the request timeout (several workers creating the same dead-letter stream at once,
 * a leader election): the stream then often exists after all. Retryable failures are retried — checking
 * whether the stream exists first — for up to {@link CREATE_STREAM_MS}, instead of failing the worker's start.
 */
async function createIfMissing(streams: StreamBinding, name: string, shards: number): Promise<void> {
  const end = Date.now() + CREATE_STREAM_MS;
  for (;;) {
    try {
      await streams.create(name, { shards });
      return;
    } catch (e) {
      if (e instanceof BindingError && e.code === 'SLUICE_ALREADY_EXISTS') return;
      if (!(e instanceof SluiceError && mappingOf(e.code).retryable) || Date.now() > end) throw e;
      if (await streams.info(name).then(() => true, () => false)) return;
      await sleep(500);
    }
  }
}

async function defaultRunner(o: ResolvedWorkerOptions, backend: Backend, log: Logger): Promise<HandlerRunner> {
  if (o.threads === 0) return InlineRunner.open(o, backend, log);
  const { HandlerPool } = await import('./threads/handler-pool.ts');
  return HandlerPool.open({
    module: o.module,
    function: o.function,
    threads: o.threads,
    // One slot per batch credit: a shard holding a credit never waits for a slot.
    slots: Math.max(o.batchesInFlight, o.threads * 2),
    timeoutMs: o.timeoutMs,
    backend: o.backend,
    bindings: [...o.bindings],
    secrets: o.secrets,
    logLevel: o.logLevel,
  });
}
