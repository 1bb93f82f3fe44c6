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
import type { EventRecord, FunctionDefinition, HandlerContext } from '../functions/types.ts';
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
      const records = batch.records.map((r, i) => inlineRecord(r, collectors[i]!, () => this.#bucket(r.source), scope));
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

function inlineRecord(r: BatchRecordInput, fx: EffectsCollector, bucket: () => Promise<ObjectBinding>, scope: Pick<RecordScope, 'objects' | 'files'>): EventRecord {
  const data = async (range?: { start?: number; end?: number }): Promise<Uint8Array> => {
    if (r.body) return range ? r.body.subarray(range.start ?? 0, range.end ?? r.body.byteLength) : r.body;
    const g = await (await bucket()).get(r.key, range ? { range } : {});
    return g.body;
  };
  return {
    key: r.key,
    type: r.type,
    source: r.source,
    shard: r.shard,
    seq: r.seq,
    version: r.version,
    size: r.size,
    etag: r.etag,
    mtime: new Date(r.mtimeMs),
    contentType: r.contentType,
    attrs: r.attrs,
    headers: r.headers,
    attempt: r.attempt,
    body: r.body,
    data,
    text: async () => Buffer.from(await data()).toString('utf8'),
    path: () => recordPath(scope, { type: r.type, source: r.source, key: r.key, version: r.version, body: r.body }),
    setAttrs: (a) => fx.setAttrs(a),
    removeAttrs: (...n) => fx.removeAttrs(n),
    update: (e) => fx.update(e),
    fail: (e, o) => fx.fail(e, o),
    get effects() {
      return fx.declarations;
    },
  };
}

/** A logger for the worker (JSON lines on stderr). */
export function workerLogger(o: ResolvedWorkerOptions): Logger {
  return pino({ level: o.logLevel, base: { function: o.function, ordinal: o.ordinal, pid: process.pid } }, pino.destination(2));
}
