/**
 * Where handlers run. `HandlerPool` (handler threads over shared-memory slots) is the production path;
 * `InlineRunner` runs the handler on the worker's main thread (threads: 0) for debugging and tests —
 * same records, same effects, no isolation.
 */
import { pathToFileURL } from 'node:url';
import pino, { type Logger } from 'pino';
import { BindingError } from '../bindings/errors.ts';
import type { Backend, ObjectBinding } from '../bindings/types.ts';
import { batchFailure, CounterSet, EffectsCollector, type BatchEffects } from '../functions/effects.ts';
import type { Attrs, DeclaredEffects, EventRecord, EventType, Expression, FailOptions, FunctionDefinition, HandlerContext } from '../functions/types.ts';
import type { BatchInput, BatchRecordInput } from './batch-types.ts';
import { ObjectFileCache } from '../bindings/file/index.ts';
import { bindAll } from './threads/bound-bindings.ts';
import { recordPath, type RecordScope } from './threads/slot-record.ts';
import type { ResolvedWorkerOptions } from './worker-options.ts';

/** Runs a batch through the function's handler and returns the declared effects. */
export interface HandlerRunner {
  run(batch: BatchInput, options?: { signal?: AbortSignal }): Promise<BatchEffects>;
  /** Slots (or main-thread runs) in use, and their number. */
  readonly occupancy: { inUse: number; slots: number };
  close(): Promise<void>;
}

/** Runs handlers on the calling thread. */
export class InlineRunner implements HandlerRunner {
  readonly #def: FunctionDefinition;
  readonly #o: ResolvedWorkerOptions;
  readonly #backend: Backend;
  readonly #log: Logger;
  readonly #data: HandlerContext['data'];
  #inUse = 0;
  #buckets = new Map<string, Promise<ObjectBinding>>();
  #files: LazyFiles | undefined;

  private constructor(def: FunctionDefinition, o: ResolvedWorkerOptions, backend: Backend, log: Logger, data: HandlerContext['data']) {
    this.#def = def;
    this.#o = o;
    this.#backend = backend;
    this.#log = log;
    this.#data = data;
  }

  static async open(o: ResolvedWorkerOptions, backend: Backend, log: Logger): Promise<InlineRunner> {
    const mod = (await import(pathToFileURL(o.module).href)) as { default?: FunctionDefinition };
    const def = mod.default;
    if (!def || typeof def.handler !== 'function') throw new BindingError('SLUICE_INVALID_ARGUMENT', `function module ${o.module} has no default export from defineFunction`);
    const files = new LazyFiles(o.timeoutMs + 5_000);
    const data = await bindAll(backend, o.bindings, { files: () => files.get() });
    await def.init?.({ function: o.function, log, data, secrets: o.secrets });
    const r = new InlineRunner(def, o, backend, log, data);
    r.#files = files;
    return r;
  }

  get occupancy(): { inUse: number; slots: number } {
    return { inUse: this.#inUse, slots: 1 };
  }

  #bucket(name: string): Promise<ObjectBinding> {
    let b = this.#buckets.get(name);
    if (!b) this.#buckets.set(name, (b = this.#backend.objects(name)));
    return b;
  }

  async run(batch: BatchInput, options?: { signal?: AbortSignal }): Promise<BatchEffects> {
    this.#inUse++;
    const ac = new AbortController();
    const onAbort = () => ac.abort(options?.signal?.reason);
    options?.signal?.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => ac.abort(new BindingError('SLUICE_HANDLER_TIMEOUT', `handler of ${batch.function} ran past ${this.#o.timeoutMs} ms`)), Math.max(0, batch.deadlineMs - Date.now()));
    try {
      const collectors = batch.records.map((r) => new EffectsCollector(r.key, r.type, this.#o.bindings));
      const scope = { objects: (b: string) => this.#bucket(b), files: () => this.#files!.get() };
      const records = batch.records.map((r, i) => new InlineRecord(r, collectors[i]!, scope));
      const counters = new CounterSet();
      const ctx: HandlerContext = Object.freeze<HandlerContext>({
        function: batch.function,
        shard: batch.shard,
        batchId: batch.batchId,
        count: (name, n) => counters.count(name, n),
        log: this.#log.child({ function: batch.function, shard: batch.shard, batchId: batch.batchId }),
        data: this.#data,
        secrets: this.#o.secrets,
        signal: ac.signal,
        deadline: batch.deadlineMs,
      });
      const out: BatchEffects = { records: collectors.map((c) => c.effects), counters: counters.values };
      try {
        // A handler on the main thread cannot be preempted: the timeout aborts ctx.signal and fails the
        // batch when the handler returns (handler threads are terminated instead).
        await Promise.race([
          this.#def.handler(records, ctx),
          new Promise((_, reject) => ac.signal.addEventListener('abort', () => reject(ac.signal.reason), { once: true })),
        ]);
      } catch (e) {
        out.error = batchFailure(e);
        if (e instanceof BindingError) out.error.error.code = e.code;
      }
      return out;
    } finally {
      clearTimeout(timer);
      options?.signal?.removeEventListener('abort', onAbort);
      this.#inUse--;
    }
  }

  async close(): Promise<void> {
    await this.#files?.close();
  }
}

/** The runner's cache of bodies as files, opened on first use. */
class LazyFiles {
  #cache: Promise<ObjectFileCache> | undefined;
  readonly #pinMs: number;
  constructor(pinMs: number) {
    this.#pinMs = pinMs;
  }
  get(): Promise<ObjectFileCache> {
    if (this.#cache === undefined) {
      const opening = ObjectFileCache.open({ pinMs: this.#pinMs });
      opening.catch(() => (this.#cache = undefined));
      this.#cache = opening;
    }
    return this.#cache;
  }
  async close(): Promise<void> {
    const c = this.#cache;
    this.#cache = undefined;
    if (c !== undefined) await (await c).close();
  }
}

/**
 * A record of a main-thread batch. A class, not an object literal of closures: its methods live on the
 * prototype, so a batch of 500 records allocates 500 small objects instead of 500 × 9 functions (and,
 * under the TypeScript loader, 500 × 9 calls naming them) — 4–5 % of the worker's CPU per event.
 */
class InlineRecord implements EventRecord {
  readonly key: string;
  readonly type: EventType;
  readonly source: string;
  readonly shard: number;
  readonly seq: number;
  readonly version: number;
  readonly size: number;
  readonly etag: string;
  readonly mtime: Date;
  readonly contentType: string;
  readonly attrs: Readonly<Attrs>;
  readonly headers: Readonly<Record<string, string>>;
  readonly attempt: number;
  readonly body: Uint8Array | undefined;
  readonly #fx: EffectsCollector;
  readonly #scope: Pick<RecordScope, 'objects' | 'files'>;

  constructor(r: BatchRecordInput, fx: EffectsCollector, scope: Pick<RecordScope, 'objects' | 'files'>) {
    this.key = r.key;
    this.type = r.type;
    this.source = r.source;
    this.shard = r.shard;
    this.seq = r.seq;
    this.version = r.version;
    this.size = r.size;
    this.etag = r.etag;
    this.mtime = new Date(r.mtimeMs);
    this.contentType = r.contentType;
    this.attrs = r.attrs;
    this.headers = r.headers;
    this.attempt = r.attempt;
    this.body = r.body;
    this.#fx = fx;
    this.#scope = scope;
  }

  async data(range?: { start?: number; end?: number }): Promise<Uint8Array> {
    const b = this.body;
    if (b) return range ? b.subarray(range.start ?? 0, range.end ?? b.byteLength) : b;
    const g = await (await this.#scope.objects(this.source)).get(this.key, range ? { range } : {});
    return g.body;
  }

  async text(): Promise<string> {
    return Buffer.from(await this.data()).toString('utf8');
  }

  path(): Promise<string> {
    return recordPath(this.#scope, { type: this.type, source: this.source, key: this.key, version: this.version, body: this.body });
  }

  setAttrs(a: Attrs): void {
    this.#fx.setAttrs(a);
  }

  removeAttrs(...names: string[]): void {
    this.#fx.removeAttrs(names);
  }

  update(e: Expression): void {
    this.#fx.update(e);
  }

  fail(e: Error | string, o?: FailOptions): void {
    this.#fx.fail(e, o);
  }

  get effects(): DeclaredEffects {
    return this.#fx.declarations;
  }
}

/** A logger for the worker (JSON lines on stderr). */
export function workerLogger(o: ResolvedWorkerOptions): Logger {
  return pino({ level: o.logLevel, base: { function: o.function, ordinal: o.ordinal, pid: process.pid } }, pino.destination(2));
}
