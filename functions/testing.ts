/**
 * The test harness of the authoring API: runs a function definition's handler on synthetic records,
 * in-process, with no server, backend or worker at all.
 *
 * ```ts
 * import { invokeHandler } from '../testing.ts'; // from a function's folder
 * const r = await invokeHandler(fn, [{ key: 'a.txt', body: 'SSN 078-05-1120' }]);
 * expect(r.byKey('a.txt')?.set).toEqual({ has_ssn: true, has_ccard: false });
 * expect(r.counters).toEqual({ objects_scanned: 1, has_ssn: 1 });
 * ```
 *
 * Effects are collected by the same classes the handler threads use ({@link EffectsCollector},
 * {@link CounterSet}, {@link batchFailure}), so validation, merging and error classification match
 * the runtime. What the harness cannot do like the runtime: a synchronous handler that never yields
 * cannot be stopped by the timeout (the runtime replaces its thread), and bindings in `ctx.data` are
 * whatever the test passes (e.g. a `LocalBackend`'s), without the access checks of the spec.
 */
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { SluiceError } from '../bindings/errors.ts';
import { ObjectFileCache } from '../bindings/file/index.ts';
import { applyUpdate } from '../bindings/expr/index.ts';
import { cloneValue } from '../bindings/expr/value-ops.ts';
import { etagOf, resolveRange } from '../bindings/shared.ts';
import { checkAttrs, type Attrs, type Item } from '../bindings/values.ts';
import { batchFailure, CounterSet, EffectsCollector, type BatchEffects, type EffectBinding, type RecordEffects } from './effects.ts';
import type { BoundBinding, DeclaredEffects, EventRecord, EventType, Expression, FailOptions, FunctionDefinition, HandlerContext } from './types.ts';

/** A record to hand to the handler; everything but `key` has a default. */
export interface SyntheticRecord {
  /** Object key, or the partition key of a stream record. */
  key: string;
  /** The body (strings are encoded as UTF-8). @default empty (absent for a `delete`) */
  body?: Uint8Array | string;
  /** Event type. @default 'put' */
  type?: EventType;
  /** Attributes of the object when the batch was formed. @default {} */
  attrs?: Attrs;
  /** @default 'application/octet-stream' ('' for a `delete`) */
  contentType?: string;
  /** Body size in bytes. @default the body's length */
  size?: number;
  /** @default hex MD5 of the body ('' for a `delete` without a body) */
  etag?: string;
  /** Object version after the change. @default `seq` (0 for a `record`) */
  version?: number;
  /** Sequence in the shard. @default index in the batch + 1 */
  seq?: number;
  /** @default the time of the invocation */
  mtime?: Date;
  /** Bucket or stream name. @default 'test' */
  source?: string;
  /** @default {@link InvokeOptions.shard} */
  shard?: number;
  /** Stream record headers. @default {} */
  headers?: Record<string, string>;
  /** Delivery attempt, from 1. @default 1 */
  attempt?: number;
  /**
   * Whether the body came with the batch ("data push"): true puts it on `record.body`; false leaves
   * `record.body` undefined, so the handler must read it with `record.data()` (which still returns
   * this synthetic body). @default true
   */
  inline?: boolean;
}

/** Options of {@link invokeHandler}. */
export interface InvokeOptions {
  /** Function name (`ctx.function`, and in every log line). @default 'test' */
  function?: string;
  /** Shard of the batch (`ctx.shard`). @default 0 */
  shard?: number;
  /** Handler timeout in ms: then `ctx.signal` aborts and the result carries SLUICE_HANDLER_TIMEOUT. @default 30000 */
  timeoutMs?: number;
  /** Bindings the handler sees as `ctx.data` (and `init` as its `data`). @default {} */
  data?: Record<string, BoundBinding>;
  /** Secrets the handler sees as `ctx.secrets` (and `init` as its `secrets`). @default {} */
  secrets?: Record<string, string>;
  /** pino level of `ctx.log`; lines at or above it are captured in {@link InvokeResult.logs}. @default 'silent' */
  logLevel?: string;
  /** Run the definition's `init` before the handler, as a fresh handler thread does. @default true */
  runInit?: boolean;
  /**
   * The spec's bindings (`{ name, kind, access }`, as in function.yaml) that `record.effects` may
   * declare effects through; the declared effects come back in each record's `extra`. @default none
   * (every `record.effects` call is SLUICE_ACCESS_DENIED, as for a spec without bindings)
   */
  bindings?: EffectBinding[];
}

/**
 * What the handler declared. `records` and `counters` are kept even when `error` is set, to help
 * debugging; the runtime commits none of them for a failed batch.
 */
export interface InvokeResult extends BatchEffects {
  /** Log lines of `ctx.log` (and `init`'s log), parsed from pino's JSON, in order. */
  logs: object[];
  /** Wall time of the handler (not `init`), in ms. */
  durationMs: number;
  /** Effects of the first record with this key, or undefined when no record has it. */
  byKey(key: string): RecordEffects | undefined;
}

/** Runs `def` (its `init`, then its handler) on one batch of synthetic records. Never rejects for a handler failure. */
export async function invokeHandler(def: FunctionDefinition, records: SyntheticRecord[], options: InvokeOptions = {}): Promise<InvokeResult> {
  const fn = options.function ?? 'test';
  const shard = options.shard ?? 0;
  const timeoutMs = options.timeoutMs ?? 30_000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new SluiceError('SLUICE_INVALID_ARGUMENT', `invokeHandler: timeoutMs must be a positive number, got ${timeoutMs}`);
  if (!Array.isArray(records)) throw new SluiceError('SLUICE_INVALID_ARGUMENT', 'invokeHandler: records must be an array');
  const data = Object.freeze({ ...options.data });
  const secrets = Object.freeze({ ...options.secrets });
  const batchId = `test-${randomUUID()}`;

  const logs: object[] = [];
  const root = pino({ level: options.logLevel ?? 'silent', base: null }, { write: (line: string) => void logs.push(JSON.parse(line) as object) });
  const log = root.child({ function: fn, shard, batchId });

  // Past the end of the invocation, declarations are dropped: the runtime has already taken the
  // results (or replaced the thread of a timed-out handler), so late effects never commit.
  const open = { value: true };
  const now = new Date();
  // record.path() writes files through the runtime's own cache, removed when the invocation ends.
  let cache: Promise<ObjectFileCache> | undefined;
  const files = (): Promise<ObjectFileCache> => (cache ??= ObjectFileCache.open({ pinMs: timeoutMs }));
  const recs = records.map((r, i) => new SyntheticEventRecord(r, i, shard, now, open, files, options.bindings ?? []));
  const counters = new CounterSet();
  const controller = new AbortController();
  const result: InvokeResult = {
    records: recs.map((r) => r.declared),
    counters: counters.values,
    logs,
    durationMs: 0,
    byKey: (key) => recs.find((r) => r.key === key)?.declared,
  };

  if (def.init !== undefined && options.runInit !== false) {
    try {
      await def.init({ function: fn, log, data, secrets });
    } catch (err) {
      open.value = false;
      result.error = batchFailure(err);
      return result;
    }
  }

  const deadline = Date.now() + timeoutMs;
  const ctx: HandlerContext = {
    function: fn,
    shard,
    batchId,
    count: (name, n) => {
      if (open.value) counters.count(name, n);
    },
    log,
    data,
    secrets,
    signal: controller.signal,
    deadline,
  };
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  const started = performance.now();
  try {
    const run = Promise.resolve().then(() => def.handler(recs, ctx));
    // A timed-out handler may still settle later; its outcome no longer matters.
    run.catch(() => undefined);
    if ((await Promise.race([run, timedOut])) === 'timeout') {
      const err = new SluiceError('SLUICE_HANDLER_TIMEOUT', `function '${fn}': handler ran past its timeout of ${timeoutMs} ms`);
      controller.abort(err);
      result.error = batchFailure(err);
    }
  } catch (err) {
    result.error = batchFailure(err);
  } finally {
    clearTimeout(timer);
    open.value = false;
    result.durationMs = performance.now() - started;
    if (cache !== undefined) await (await cache).close();
  }
  return result;
}

/**
 * The attributes an object has after the committer applies `effects` to `attrs`: `set`, then
 * `remove`, then each update expression in order. A failed record (`effects.failure`) commits
 * nothing, so its attributes come back unchanged. Never mutates `attrs`; throws the committer's
 * errors (SLUICE_EXPRESSION_INVALID, SLUICE_VALUE_TOO_LARGE, ...).
 */
export function applyEffects(attrs: Attrs, effects: RecordEffects): Attrs {
  let out = cloneValue(attrs) as Item;
  if (effects.failure !== undefined) return out;
  for (const [k, v] of Object.entries(effects.set)) out[k] = cloneValue(v);
  for (const k of effects.remove) delete out[k];
  for (const u of effects.updates) out = applyUpdate(u, out);
  checkAttrs(out, 'attributes after the effects');
  return out;
}

/** `record.effects` after the invocation ended: declarations are dropped. */
const DROPPED_EFFECTS: DeclaredEffects = Object.freeze({
  kv: () => Object.freeze({ update: () => undefined }),
  stream: () => Object.freeze({ put: () => undefined }),
  object: () => Object.freeze({ updateAttrs: () => undefined }),
});

/** {@link EventRecord} over a plain object. */
class SyntheticEventRecord implements EventRecord {
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
  readonly #bytes: Uint8Array | undefined;
  readonly #collector: EffectsCollector;
  readonly #open: { readonly value: boolean };
  readonly #files: () => Promise<ObjectFileCache>;

  constructor(r: SyntheticRecord, index: number, shard: number, now: Date, open: { readonly value: boolean }, files: () => Promise<ObjectFileCache>, bindings: readonly EffectBinding[]) {
    const where = `records[${index}]`;
    if (typeof r?.key !== 'string') throw new SluiceError('SLUICE_INVALID_ARGUMENT', `invokeHandler: ${where}.key must be a string`);
    this.key = r.key;
    this.type = r.type ?? 'put';
    // A copy: handlers may not mutate the test's data (the runtime's batch is read-only too).
    this.#bytes = typeof r.body === 'string' ? new TextEncoder().encode(r.body) : r.body !== undefined ? r.body.slice() : this.type === 'delete' ? undefined : new Uint8Array(0);
    this.source = r.source ?? 'test';
    this.shard = r.shard ?? shard;
    this.seq = r.seq ?? index + 1;
    this.version = r.version ?? (this.type === 'record' ? 0 : this.seq);
    this.size = r.size ?? this.#bytes?.byteLength ?? 0;
    this.etag = r.etag ?? (this.#bytes !== undefined ? etagOf(this.#bytes) : '');
    this.mtime = r.mtime ?? now;
    this.contentType = r.contentType ?? (this.type === 'delete' ? '' : 'application/octet-stream');
    const attrs = { ...r.attrs };
    checkAttrs(attrs, `invokeHandler: ${where}.attrs`);
    this.attrs = Object.freeze(attrs);
    this.headers = Object.freeze({ ...r.headers });
    this.attempt = r.attempt ?? 1;
    this.body = r.inline === false ? undefined : this.#bytes;
    this.#collector = new EffectsCollector(r.key, this.type, bindings);
    this.#open = open;
    this.#files = files;
  }

  /** What the handler declared for this record. */
  get declared(): RecordEffects {
    return this.#collector.effects;
  }

  get effects(): DeclaredEffects {
    // Past the end of the invocation, declarations are dropped (as the other effects are).
    return this.#open.value ? this.#collector.declarations : DROPPED_EFFECTS;
  }

  async data(range?: { start?: number; end?: number }): Promise<Uint8Array> {
    // A delete has no body to read, as the bucket would say.
    if (this.#bytes === undefined) throw new SluiceError('SLUICE_NOT_FOUND', `object '${this.key}' does not exist`);
    const r = resolveRange(this.key, this.#bytes.byteLength, range);
    return this.#bytes.subarray(r.start, r.end);
  }

  async text(): Promise<string> {
    return new TextDecoder().decode(await this.data());
  }

  async path(): Promise<string> {
    if (this.type === 'record') throw new SluiceError('SLUICE_INVALID_ARGUMENT', `record '${this.key}'.path(): a stream record has no object (its payload is record.body)`);
    if (this.#bytes === undefined) throw new SluiceError('SLUICE_NOT_FOUND', `object '${this.key}' does not exist`);
    return (await this.#files()).materialize(this.source, this.key, { version: this.version, body: this.#bytes });
  }

  setAttrs(attrs: Attrs): void {
    if (this.#open.value) this.#collector.setAttrs(attrs);
  }

  removeAttrs(...names: string[]): void {
    if (this.#open.value) this.#collector.removeAttrs(names);
  }

  update(expr: Expression): void {
    if (this.#open.value) this.#collector.update(expr);
  }

  fail(error: Error | string, options?: FailOptions): void {
    if (this.#open.value) this.#collector.fail(error, options);
  }
}
