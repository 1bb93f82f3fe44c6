/**
 * The controller: keeps the desired functions (stored through the KV binding, table `sluice-functions`)
 * and reconciles them into running workers through a driver, scaling each on its lag.
 *
 * Every `intervalMs` it measures, per function, the lag (records not yet handled over all shards, read
 * from the checkpoints and the streams), the incoming rate and the per-replica throughput, asks the
 * pure `desiredReplicas()` for a count and tells the driver. `scale` pins a count (within min..max)
 * until the next deploy.
 */
import { dirname, isAbsolute, resolve } from 'node:path';
import { BindingError } from '../bindings/errors.ts';
import type { QueryRunStatus } from './control-plane.ts';
import type { Backend, Item, KvBinding } from '../bindings/types.ts';
import type { SyntheticRecord } from '../functions/testing.ts';
import {
  checkHandlerLoads,
  graphDigest,
  handlerGraph,
  invokeInChild,
  openStateTable,
  parseDurationMs,
  resolveWorkerOptions,
  StateReader,
  type InvokeChildResult,
  type WorkerOptions,
} from '../runtime/index.ts';
import { desiredReplicas } from './autoscaler.ts';
import { ControllerMetrics } from './metrics.ts';
import type { ControlPlane, FunctionStatus, InvokeEvent, LogLine, ShardStatus } from './control-plane.ts';
import type { Driver, RolloutPhases } from './driver.ts';
import type { ScalerSource } from './grpc/scaler.ts';
import { loadFunctionSpec, toWorkerOptions, type FunctionSpec } from './spec/index.ts';

/** Table of deployed functions. */
export const FUNCTIONS_TABLE = 'sluice-functions';
/**
 * Records waiting per replica at both ends of a measurement interval for its handled rate to count as
 * the replicas' capacity (see Runtime.throughput): above what a micro-batch in flight holds.
 */
const BUSY_BACKLOG_PER_REPLICA = 10;
/** Shortest interval the incoming and handled rates are measured over (ms). */
const RATE_INTERVAL_MS = 750;

/** Options of the controller. */
export interface ControllerOptions {
  /** Where the controller keeps desired functions (and reads lag): the platform's backend. */
  backend: Backend;
  driver: Driver;
  /** Reconcile period. @default 1000 */
  intervalMs?: number;
  /** Log sink of the controller itself. @default none */
  onEvent?: (e: { function: string; message: string }) => void;
  /** How long the deploy-time sandbox may take to load a handler. @default 30000 */
  loadTimeoutMs?: number;
  /**
   * The platform's own embedded store, as the local driver's option of that name: where `invoke`
   * binds a spec that says `backend: local`. @default the spec's dir
   */
  localDir?: string;
}

/** Refuses a spec whose bindings name a bucket, table or stream that does not exist (SLUICE_BINDING_MISSING). */
export async function checkBindingsExist(backend: Backend, spec: FunctionSpec): Promise<void> {
  for (const [i, b] of spec.spec.bindings.entries()) {
    try {
      if (b.kind === 'object') await backend.objects(b.resource);
      else if (b.kind === 'kv') await backend.kv(b.resource);
      else if (b.kind === 'stream') await backend.streams().info(b.resource);
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      if (code !== 'SLUICE_BUCKET_NOT_FOUND' && code !== 'SLUICE_TABLE_NOT_FOUND' && code !== 'SLUICE_STREAM_NOT_FOUND' && code !== 'SLUICE_NOT_FOUND') throw e;
      const what = b.kind === 'object' ? 'bucket' : b.kind === 'kv' ? 'table' : 'stream';
      throw new BindingError('SLUICE_BINDING_MISSING', `function '${spec.metadata.name}': binding '${b.name}' (spec.spec.bindings[${i}]) names ${what} '${b.resource}', which does not exist; create it first`, {
        cause: e,
        details: { binding: b.name, kind: b.kind, resource: b.resource, path: `spec.bindings[${i}]` },
      });
    }
  }
}

interface Stored {
  yaml: string;
  specDir: string;
  revision: number;
  pinned?: number;
  /** Digest of the handler's sources (its import graph) at deploy time: a code change is a new revision. */
  codeHash?: string;
}

/** A stored function as a KV item. */
function encodeStored(s: Stored): Item {
  return { yaml: s.yaml, specDir: s.specDir, revision: s.revision, ...(s.pinned !== undefined ? { pinned: s.pinned } : {}), ...(s.codeHash !== undefined ? { codeHash: s.codeHash } : {}) };
}

/** A stored function read back (fields of the wrong type read as absent). */
function decodeStored(i: Item): Stored {
  const s: Stored = { yaml: typeof i.yaml === 'string' ? i.yaml : '', specDir: typeof i.specDir === 'string' ? i.specDir : '', revision: typeof i.revision === 'number' ? i.revision : 0 };
  if (typeof i.pinned === 'number') s.pinned = i.pinned;
  if (typeof i.codeHash === 'string') s.codeHash = i.codeHash;
  return s;
}

interface Runtime {
  spec: FunctionSpec;
  stored: Stored;
  replicas: number;
  history: { at: number; replicas: number }[];
  lastActiveAt: number;
  lastHead?: { at: number; total: number; done: number };
  /** Records arriving per second over the last measurement interval. */
  incoming: number;
  /**
   * Records one replica can handle per second: measured only over intervals with a backlog at both ends
   * (the replicas were busy throughout), otherwise the last such measure is kept. A rate observed while the
   * workers keep up says how much arrived, not how much they could take — scaling on it added replicas
   * at a couple of records per second.
   */
  throughput: number;
  /** Records handled per second over the last measurement interval, all replicas (the status's rate). */
  handledRate: number;
  lag: number;
  shards: ShardStatus[];
  errors: { at: string; message: string }[];
  appliedRevision: number;
  /** The last deploy of new code that was refused (it did not load), while this revision kept running. */
  refused?: { at: string; message: string };
}

export class Controller implements ControlPlane, ScalerSource {
  readonly #o: Required<Omit<ControllerOptions, 'onEvent' | 'loadTimeoutMs' | 'localDir'>> & Pick<ControllerOptions, 'onEvent' | 'loadTimeoutMs' | 'localDir'>;
  #table!: KvBinding;
  #state!: StateReader;
  readonly #fns = new Map<string, Runtime>();
  /** The controller's Prometheus series (served with the workers' by controller/metrics.ts). */
  readonly metrics = new ControllerMetrics();
  #timer: NodeJS.Timeout | undefined;
  #busy: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(o: ControllerOptions) {
    this.#o = { intervalMs: 1000, ...o };
  }

  /** Opens the tables and re-applies every stored function (a restarted controller resumes). */
  static async open(options: ControllerOptions): Promise<Controller> {
    const c = new Controller(options);
    await options.backend.createTable(FUNCTIONS_TABLE);
    c.#table = await options.backend.kv(FUNCTIONS_TABLE);
    c.#state = new StateReader(await openStateTable(options.backend));
    let marker: string | undefined;
    do {
      const page = await c.#table.getItems(marker ? { marker } : {});
      for (const e of page.items) await c.#adopt(decodeStored(e.item));
      marker = page.nextMarker;
    } while (marker);
    return c;
  }

  /** Starts the reconcile loop. */
  start(): void {
    const tick = () => {
      this.#busy = this.reconcile()
        .catch((e: unknown) => this.#o.onEvent?.({ function: '*', message: `reconcile failed: ${(e as Error).message}` }))
        .finally(() => {
          if (!this.#closed) this.#timer = setTimeout(tick, this.#o.intervalMs);
        });
    };
    tick();
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#busy;
    await this.#o.driver.close();
  }

  /** Makes `stored` the running revision; `applying` is a driver rollout started already (deploy's early boot). */
  async #adopt(stored: Stored, applying?: Promise<RolloutPhases | void>): Promise<RolloutPhases | void> {
    const spec = loadFunctionSpec(stored.yaml);
    const name = spec.metadata.name;
    const prev = this.#fns.get(name);
    const rt: Runtime = {
      spec,
      stored,
      replicas: prev?.replicas ?? 0,
      history: [],
      lastActiveAt: Date.now(),
      incoming: 0,
      throughput: 0,
      handledRate: 0,
      lag: 0,
      shards: [],
      errors: prev?.errors ?? [],
      appliedRevision: 0,
    };
    this.#fns.set(name, rt);
    const phases = await (applying ?? this.#o.driver.apply(spec, stored.specDir));
    rt.appliedRevision = stored.revision;
    const initial = stored.pinned ?? Math.max(spec.spec.scaling.minReplicas, 1);
    await this.#scaleTo(name, initial);
    rt.replicas = initial;
    return phases;
  }

  /** Tells the driver and publishes the live count for the workers (state table), in that order. */
  async #scaleTo(name: string, replicas: number): Promise<void> {
    this.metrics.desiredReplicas.set({ function: name }, replicas);
    if (replicas >= 1) await this.#state.publishReplicas(name, replicas);
    await this.#o.driver.scale(name, replicas);
  }

  #get(name: string): Runtime {
    const rt = this.#fns.get(name);
    if (!rt) throw new BindingError('SLUICE_NOT_FOUND', `function '${name}' is not deployed`);
    return rt;
  }

  async deploy(specYaml: string, specDir: string): Promise<{ name: string; revision: number }> {
    const spec = loadFunctionSpec(specYaml);
    const dir = isAbsolute(specDir) ? specDir : resolve(specDir);
    // Fail the deploy, not the workers: options must resolve and the trigger's source must exist.
    const o = toWorkerOptions(spec, { specDir: dir, ordinal: 0, replicas: 1, env: process.env });
    if (o.trigger.type === 'object') await this.#o.backend.objects(o.trigger.bucket);
    // A cron trigger's tick stream and a scheduled query's run stream belong to the function: created here
    // (and by its workers), one shard; a plain stream trigger's stream must exist.
    const own = o.trigger.type === 'stream' ? (o.trigger.cron !== undefined ? o.trigger.stream : undefined) : o.trigger.type === 'object' ? o.trigger.feed : undefined;
    if (own !== undefined) {
      await this.#o.backend
        .streams()
        .create(own, { shards: 1 })
        .catch((e: unknown) => {
          if ((e as { code?: string }).code !== 'SLUICE_ALREADY_EXISTS') throw e;
        });
    } else if (o.trigger.type === 'stream') await this.#o.backend.streams().info(o.trigger.stream);
    await checkBindingsExist(this.#o.backend, spec).catch((e: unknown) => {
      this.metrics.loadFailures.inc({ function: spec.metadata.name, code: (e as { code?: string }).code ?? 'SLUICE_INTERNAL' });
      throw e;
    });
    const name = spec.metadata.name;
    const graph = await handlerGraph(o.module);
    const codeHash = graphDigest(graph.files);
    const got = await this.#table.getItem(name);
    const cur = got && decodeStored(got.item);
    // The same spec and code again (e.g. `sluice dev` restarting) is not a new revision and keeps a pinned scale.
    if (cur && cur.yaml === specYaml && cur.specDir === dir && cur.codeHash === codeHash && this.#fns.has(name)) return { name, revision: cur.revision };
    // Load the handler in a sandbox process first: a module that does not load is refused here, and
    // whatever runs now (the previous revision) keeps running. A running function's new workers boot
    // meanwhile (the sandbox is their gate): both take most of a reload, so they overlap.
    const t0 = Date.now();
    const running = this.#fns.get(name);
    const check = checkHandlerLoads(o.module, { function: name, env: process.env, ...(this.#o.loadTimeoutMs !== undefined ? { timeoutMs: this.#o.loadTimeoutMs } : {}) });
    let sandboxMs = 0;
    void check.then(() => (sandboxMs = Date.now() - t0), () => undefined);
    const applying = running !== undefined && running.replicas >= 1 ? this.#o.driver.apply(spec, dir, { gate: check }) : undefined;
    // Awaited below (in #adopt, or on refusal); a rejection meanwhile must not count as unhandled.
    applying?.catch(() => undefined);
    try {
      await check;
    } catch (e) {
      await applying?.catch(() => undefined);
      // A refused reload of a running function shows in its status; the running revision stays.
      if (running) {
        const at = new Date().toISOString();
        running.errors.unshift({ at, message: `revision ${running.stored.revision} keeps running; the new code was refused: ${(e as Error).message}` });
        running.errors.length = Math.min(running.errors.length, 20);
        running.refused = { at, message: (e as Error).message };
      }
      this.metrics.loadFailures.inc({ function: name, code: (e as { code?: string }).code ?? 'SLUICE_INTERNAL' });
      throw e;
    }
    const revision = (cur?.revision ?? 0) + 1;
    const stored: Stored = { yaml: specYaml, specDir: dir, revision, codeHash };
    const before = running ? await this.#epochs(name, running.shards.length) : [];
    await this.#table.putItem(name, encodeStored(stored));
    const phases = await this.#adopt(stored, applying);
    const took = Object.entries({ 'sandbox load': sandboxMs, ...(phases ?? {}) }).map(([k, v]) => `${k} +${v} ms`);
    this.#o.onEvent?.({ function: name, message: `deployed revision ${revision} (${took.join(', ')}; rollout ${Date.now() - t0} ms)` });
    if (before.length > 0) void this.#reportTakeover(name, revision, before, t0);
    return { name, revision };
  }

  /** The lease epoch of each shard of `fn` (0 for a shard never leased). */
  async #epochs(fn: string, shards: number): Promise<number[]> {
    return Promise.all(Array.from({ length: shards }, async (_, s) => (await this.#state.lease(fn, s))?.epoch ?? 0));
  }

  /**
   * Reports when the new revision's workers hold every shard (each lease live with a newer epoch than
   * before the deploy): the last step of a reload before new code handles records, watched in the
   * background (25 ms polls, 30 s at most) so that a deploy returns as soon as the rollout is done.
   */
  async #reportTakeover(fn: string, revision: number, before: number[], t0: number): Promise<void> {
    const end = Date.now() + 30_000;
    while (!this.#closed && Date.now() < end && this.#fns.get(fn)?.stored.revision === revision) {
      const taken = await Promise.all(before.map(async (e, s) => {
        const l = await this.#state.lease(fn, s);
        return l !== undefined && l.owner !== '' && l.epoch > e && l.expiresAt > Date.now();
      })).catch(() => []);
      if (taken.length === before.length && taken.every(Boolean)) {
        this.#o.onEvent?.({ function: fn, message: `revision ${revision} owns all ${before.length} shards, ${Date.now() - t0} ms after the sandbox load began` });
        return;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  async remove(name: string): Promise<boolean> {
    const had = this.#fns.delete(name);
    const removed = await this.#o.driver.remove(name);
    const deleted = await this.#table.deleteItem(name);
    return had || removed || deleted;
  }

  /** The HTTP routes of the deployed functions with an http trigger (for the platform's ingress). */
  httpRoutes(): { function: string; path: string; methods: string[]; replicas: number }[] {
    const out: { function: string; path: string; methods: string[]; replicas: number }[] = [];
    for (const rt of this.#fns.values()) {
      const h = rt.spec.spec.triggers[0]?.http;
      if (h !== undefined) out.push({ function: rt.spec.metadata.name, path: h.path, methods: [...(h.methods ?? [])], replicas: Math.max(rt.replicas, rt.spec.spec.scaling.maxReplicas) });
    }
    return out;
  }

  async list(): Promise<{ name: string; revision: number; replicas: number }[]> {
    return [...this.#fns.values()].map((r) => ({ name: r.spec.metadata.name, revision: r.stored.revision, replicas: r.replicas })).sort((a, b) => a.name.localeCompare(b.name));
  }

  async scale(name: string, replicas: number): Promise<void> {
    const rt = this.#get(name);
    const { minReplicas, maxReplicas } = rt.spec.spec.scaling;
    if (!Number.isInteger(replicas) || replicas < minReplicas || replicas > maxReplicas)
      throw new BindingError('SLUICE_INVALID_ARGUMENT', `scale ${name}: ${replicas} is outside the spec's scaling range ${minReplicas}..${maxReplicas}`);
    rt.stored = { ...rt.stored, pinned: replicas };
    await this.#table.putItem(name, encodeStored(rt.stored));
    await this.#scaleTo(name, replicas);
    rt.replicas = replicas;
  }

  /** One reconcile round over every function (also called by tests to step deterministically). */
  async reconcile(): Promise<void> {
    const endRound = this.metrics.reconcileSeconds.startTimer();
    try {
      await this.#reconcileAll();
    } finally {
      endRound();
    }
  }

  /** Refreshes the series that come from the driver (ready replicas, restarts, last error); called per scrape. */
  async refreshMetrics(): Promise<void> {
    for (const [name, rt] of this.#fns) {
      const w = await this.#o.driver.status(name).catch(() => undefined);
      this.metrics.desiredReplicas.set({ function: name }, rt.replicas);
      this.metrics.lag.set({ function: name }, rt.lag);
      this.metrics.readyReplicas.set({ function: name }, w?.ready ?? 0);
      this.metrics.restarts.set({ function: name }, w?.restarts ?? w?.replicas.reduce((n, r) => n + r.restarts, 0) ?? 0);
      const last = [w?.lastError?.at, rt.refused?.at].filter((x): x is string => x !== undefined).sort().at(-1);
      this.metrics.lastErrorTime.set({ function: name }, last ? Date.parse(last) / 1000 : 0);
    }
  }

  async #reconcileAll(): Promise<void> {
    for (const rt of this.#fns.values()) {
      try {
        await this.#measure(rt);
        this.metrics.lag.set({ function: rt.spec.metadata.name }, rt.lag);
        if (rt.stored.pinned !== undefined) continue;
        const s = rt.spec.spec.scaling;
        // KEDA owns the replica count of this function (its ScaledObject reads our external scaler).
        if (s.autoscaler === 'keda') continue;
        const now = Date.now();
        const d = desiredReplicas({
          lag: rt.lag,
          incomingPerSecond: rt.incoming,
          throughputPerReplica: rt.throughput,
          targetLagPerReplica: s.targetLagPerReplica,
          current: rt.replicas,
          min: s.minReplicas,
          max: s.maxReplicas,
          now,
          lastActiveAt: rt.lastActiveAt,
          scaleToZeroAfterMs: parseDurationMs(s.scaleToZeroAfter, 'scaling.scaleToZeroAfter'),
          scaleUpWindowMs: parseDurationMs(s.stabilization.scaleUp, 'scaling.stabilization.scaleUp'),
          scaleDownWindowMs: parseDurationMs(s.stabilization.scaleDown, 'scaling.stabilization.scaleDown'),
          history: rt.history,
        });
        rt.history.push({ at: now, replicas: d.recommendation });
        rt.history = rt.history.filter((h) => now - h.at <= 600_000);
        if (d.replicas !== rt.replicas) {
          this.#o.onEvent?.({ function: rt.spec.metadata.name, message: `${rt.replicas} → ${d.replicas}: ${d.reason}` });
          this.metrics.scaleDecisions.inc({ function: rt.spec.metadata.name, direction: d.replicas > rt.replicas ? 'up' : 'down' });
          await this.#scaleTo(rt.spec.metadata.name, d.replicas);
          rt.replicas = d.replicas;
        }
      } catch (e) {
        this.metrics.reconcileErrors.inc({ function: rt.spec.metadata.name });
        rt.errors.unshift({ at: new Date().toISOString(), message: (e as Error).message });
        rt.errors.length = Math.min(rt.errors.length, 20);
      }
    }
  }

  /**
   * The run history of a scheduled query trigger with each run's progress: its records are consecutive in
   * the one-shard run stream, so the checkpoint's position says how many are handled; pending ones that
   * failed are `failed`.
   */
  async #queryRuns(fn: string): Promise<QueryRunStatus[]> {
    const runs = await this.#state.queryRuns(fn);
    const c = await this.#state.checkpoint(fn, 0);
    const next = c?.seq ?? 1;
    return runs.map((r) => {
      let processed = 0;
      let failed = 0;
      if (r.firstSeq !== undefined && r.lastSeq !== undefined) {
        const inRun = (seq: number) => seq >= r.firstSeq! && seq <= r.lastSeq!;
        const pending = (c?.pending ?? []).filter((p) => inRun(p.seq));
        processed = Math.max(0, Math.min(r.lastSeq, next - 1) - r.firstSeq + 1) - pending.length;
        failed = pending.filter((p) => p.attempts > 0 && p.error !== undefined).length;
      }
      return { id: r.id, startedAt: r.startedAt, ...(r.finishedAt !== undefined ? { finishedAt: r.finishedAt } : {}), matched: r.matched, processed: Math.max(0, processed), failed };
    });
  }

  /** Reads lag per shard (checkpoint vs stream) and derives the incoming rate and throughput. */
  async #measure(rt: Runtime): Promise<void> {
    const fn = rt.spec.metadata.name;
    const o = toWorkerOptions(rt.spec, { specDir: rt.stored.specDir, ordinal: 0, replicas: 1, env: process.env });
    const streams = this.#o.backend.streams();
    if (o.trigger.type === 'http') {
      // Requests are not queued in a stream: no lag, no shards (scaling follows min/max and pins).
      rt.lag = 0;
      rt.shards = [];
      return;
    }
    const stream = o.trigger.type === 'object' ? (o.trigger.feed ?? (await (await this.#o.backend.objects(o.trigger.bucket)).info()).changeStream) : o.trigger.stream;
    const info = await streams.info(stream);
    const shards: ShardStatus[] = [];
    let lag = 0;
    let total = 0;
    let done = 0;
    for (let s = 0; s < info.shards; s++) {
      const c = await this.#state.checkpoint(fn, s);
      const lease = await this.#state.lease(fn, s);
      const from = c?.seq ?? info.bounds[s]!.first;
      const page = await streams.getRecords({ stream, shard: s, seq: from }, { limit: 1 });
      const shardLag = page.lag + page.records.length + (c?.pending.length ?? 0);
      lag += shardLag;
      const live = lease?.owner && (lease.expiresAt ?? 0) > Date.now() ? lease.owner : '';
      shards.push({ shard: s, owner: live, epoch: lease?.epoch ?? 0, lag: shardLag, pending: c?.pending.length ?? 0 });
      total += shardLag;
      done += c?.handled ?? 0;
    }
    const now = Date.now();
    // Rates over a short interval are noise (a status call a few ms after a round read one upload as
    // hundreds per second): they are taken over RATE_INTERVAL_MS at least; lag is fresh on every call.
    const rated = !rt.lastHead || now - rt.lastHead.at >= RATE_INTERVAL_MS;
    if (rated && rt.lastHead) {
      const dt = (now - rt.lastHead.at) / 1000;
      const handled = Math.max(0, done - rt.lastHead.done);
      rt.incoming = dt > 0 ? Math.max(0, (total - rt.lastHead.total + handled) / dt) : 0;
      rt.handledRate = dt > 0 ? handled / dt : 0;
      // Capacity only from an interval the replicas spent busy: more than what a batch in flight holds
      // waited per replica at its start and at its end.
      const busy = Math.max(1, rt.replicas) * BUSY_BACKLOG_PER_REPLICA;
      const saturated = rt.lastHead.total >= busy && total >= busy;
      if (dt > 0 && rt.replicas > 0 && handled > 0 && saturated) rt.throughput = Math.max(rt.throughput * 0.5, handled / dt / rt.replicas);
    }
    if (rated) rt.lastHead = { at: now, total, done };
    rt.lag = lag;
    rt.shards = shards;
    if (lag > 0 || (rated && rt.incoming > 0)) rt.lastActiveAt = now;
  }

  async status(name: string): Promise<FunctionStatus> {
    const rt = this.#get(name);
    await this.#measure(rt);
    const w = await this.#o.driver.status(name);
    const o = toWorkerOptions(rt.spec, { specDir: rt.stored.specDir, ordinal: 0, replicas: 1, env: process.env });
    const counters = await this.#state.counters(name, rt.shards.length);
    let deadLetters = 0;
    try {
      const dlq = await this.#o.backend.streams().info(o.retries?.deadLetterStream ?? `dlq-${name}`);
      deadLetters = dlq.bounds.reduce((n, b) => n + Math.max(0, b.last - b.first + 1), 0);
    } catch {
      deadLetters = 0;
    }
    const last = [w?.lastError, rt.refused].filter((e): e is { at: string; message: string } => e !== undefined).sort((a, b) => b.at.localeCompare(a.at))[0];
    const queryRuns = o.trigger.type === 'object' && o.trigger.feed !== undefined ? await this.#queryRuns(name) : undefined;
    return {
      ...(queryRuns ? { queryRuns } : {}),
      name,
      revision: rt.stored.revision,
      replicas: { desired: w?.desired ?? rt.replicas, ready: w?.ready ?? 0 },
      restarts: w?.restarts ?? w?.replicas.reduce((n, r) => n + r.restarts, 0) ?? 0,
      ...(last ? { lastError: { at: last.at, message: last.message } } : {}),
      shards: rt.shards,
      lag: rt.lag,
      ratePerSecond: Math.round(rt.handledRate),
      counters,
      deadLetters,
      errors: rt.errors,
    };
  }

  /** KEDA external scaler: current lag (measured now). */
  async lag(name: string): Promise<number> {
    const rt = this.#get(name);
    await this.#measure(rt);
    return rt.lag;
  }

  async targetLagPerReplica(name: string): Promise<number> {
    return this.#get(name).spec.spec.scaling.targetLagPerReplica;
  }

  /** Whether the function has work, now and at each change (checked every reconcile interval). */
  async *activity(name: string, options?: { signal?: AbortSignal }): AsyncIterable<boolean> {
    let last: boolean | undefined;
    while (!options?.signal?.aborted && !this.#closed) {
      const active = (await this.lag(name)) > 0;
      if (active !== last) yield (last = active);
      await new Promise<void>((r) => {
        const t = setTimeout(r, this.#o.intervalMs);
        options?.signal?.addEventListener('abort', () => (clearTimeout(t), r()), { once: true });
      });
    }
  }

  /**
   * Runs the handler once in a process of its own (runtime/invoke-child.ts), never in the controller:
   * a fresh module, the spec's bindings and timeout, the platform's backend (or a scratch one with
   * `dryRun`). A runaway handler is killed at its timeout; the controller is not touched.
   */
  async invoke(name: string, event: InvokeEvent): Promise<InvokeChildResult> {
    const rt = this.#get(name);
    const o = resolveWorkerOptions(this.#workerOptions(rt));
    if (o.trigger.type === 'http') throw new BindingError('SLUICE_INVALID_ARGUMENT', `invoke ${name}: an http-triggered function is invoked by a request to its route ${o.trigger.path}, not with a record`);
    const record: SyntheticRecord = { key: event.key, attrs: (event.attrs ?? {}) as Record<string, never>, source: o.trigger.type === 'object' ? o.trigger.bucket : o.trigger.stream };
    if (event.body !== undefined) record.body = event.body;
    return invokeInChild({ function: name, module: o.module, bindings: o.bindings, backend: o.backend, dryRun: event.dryRun === true, timeoutMs: o.timeoutMs, record }, { env: process.env });
  }

  /** Worker options of ordinal 0, on the platform's own embedded store when the spec says `local`. */
  #workerOptions(rt: Runtime): WorkerOptions {
    const o = toWorkerOptions(rt.spec, { specDir: rt.stored.specDir, ordinal: 0, replicas: 1, env: process.env });
    const localDir = this.#o.localDir;
    return localDir !== undefined && o.backend.kind === 'local' ? { ...o, backend: { kind: 'local', dir: localDir } } : o;
  }

  async *logs(name: string, options: { follow: boolean; signal?: AbortSignal }): AsyncIterable<LogLine> {
    this.#get(name);
    const d = this.#o.driver as Driver & {
      logs?: (n: string) => LogLine[];
      events?: import('node:events').EventEmitter;
      streamLogs?: (n: string, o: { follow: boolean; signal?: AbortSignal }) => AsyncIterable<LogLine>;
    };
    // Kubernetes: the pods' logs through the API server.
    if (d.streamLogs) {
      yield* d.streamLogs(name, options);
      return;
    }
    if (!d.logs) throw new BindingError('SLUICE_INVALID_ARGUMENT', `logs are not available from the ${d.kind} driver; use kubectl logs`);
    for (const l of d.logs(name)) yield l;
    if (!options.follow || !d.events) return;
    const queue: LogLine[] = [];
    let wake: (() => void) | undefined;
    const onLog = (fn: string, l: LogLine) => {
      if (fn !== name) return;
      if (queue.length < 10_000) queue.push(l);
      wake?.();
    };
    d.events.on('log', onLog);
    try {
      while (!options.signal?.aborted) {
        while (queue.length > 0) yield queue.shift()!;
        await new Promise<void>((r) => {
          wake = r;
          options.signal?.addEventListener('abort', () => r(), { once: true });
        });
      }
    } finally {
      d.events.off('log', onLog);
    }
  }
}

/** The directory of a spec file (where its handler path is resolved). */
export function specDirOf(file: string): string {
  return dirname(resolve(file));
}
