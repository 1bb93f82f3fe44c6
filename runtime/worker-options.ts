/**
 * Worker configuration in three stages: {@link WorkerOptions} (what callers write: optional fields,
 * durations as '250ms') → {@link resolveWorkerOptions} → {@link ResolvedWorkerOptions} (all required,
 * milliseconds, frozen). Errors name the option path.
 */
import { parseCron, type CronSchedule } from './triggers/cron.ts';
import type { QuerySchedule } from './triggers/query.ts';
import { parseCondition } from '../bindings/expr/index.ts';
import { BindingError } from '../bindings/errors.ts';
import { parseDurationMs } from '../functions/types.ts';
import type { BackendSpec } from './backend-spec.ts';
import type { BindingSpec } from './batch-types.ts';
import { DEFAULT_MAX_HOPS } from './chain.ts';

/** An object trigger: change records of one bucket. */
export interface ObjectTrigger {
  type: 'object';
  bucket: string;
  /** Event types delivered. @default ['put'] */
  events?: ('put' | 'delete' | 'attrs')[];
  /** Only keys starting with this. @default '' */
  prefix?: string;
  /** Only keys ending with this. @default '' */
  suffix?: string;
  /** Bodies up to this size are read with the batch and handed over inline. @default 65536 */
  inlineBodyMaxBytes?: number;
  /**
   * Only objects whose state (system fields and attributes, after the change) matches this condition are
   * delivered; the others are skipped as filtered. A continuous query trigger is an object trigger with a
   * `where`. @default every object
   */
  where?: string;
  /**
   * A stream of change records to consume instead of the bucket's change stream: a scheduled query
   * trigger's run stream (one shard, filled by {@link QuerySchedule}'s runs). @default the change stream
   */
  feed?: string;
  /** Set for a scheduled query trigger: every worker runs the scheduler that fills `feed`. @default no runs */
  query?: QuerySchedule;
  /**
   * Deliver the change records of this function's own commits too (runtime/chain.ts). Off, a function
   * triggered by attribute changes that sets attributes does not re-trigger itself; on, only `maxHops`
   * stops such a loop. @default false
   */
  selfTrigger?: boolean;
}

/** A stream trigger: records of one user stream. */
export interface StreamTrigger {
  type: 'stream';
  stream: string;
  /**
   * Set for a cron trigger: the stream is the function's tick stream and every worker runs a ticker that
   * appends one tick per schedule instant (runtime/triggers/cron.ts). @default no ticker
   */
  cron?: CronSchedule;
  /**
   * Deliver the stream records this function's own commits emitted too (runtime/chain.ts). Off, a function
   * triggered by attribute changes that sets attributes does not re-trigger itself; on, only `maxHops`
   * stops such a loop. @default false
   */
  selfTrigger?: boolean;
}

/** An HTTP trigger as the worker receives it. */
export interface HttpTrigger {
  type: 'http';
  /** The route: requests to this path (and below it, `/path/...`) reach the function. */
  path: string;
  /** Methods accepted; others get 405. @default every method */
  methods?: string[];
  /** Largest request body; a larger one is answered 413 without calling the handler. @default 8388608 (8 MiB) */
  maxBodyBytes?: number;
  /**
   * Request bodies up to this size reach the handler whole (`req.body`); larger ones (or ones of unknown
   * length that grow past it) are streamed to it (`req.bodyStream`) in chunks with backpressure, so a
   * worker's memory does not grow with the body. @default 1048576 (1 MiB)
   */
  streamBodyBytes?: number;
  /** Requests one handler thread works on at once (handlers are mostly I/O). @default 16 */
  concurrency?: number;
  /** Requests waiting for a thread; past it, 429 with Retry-After. @default 64 */
  maxQueue?: number;
  /** Address the worker's HTTP server binds. @default '127.0.0.1' */
  host?: string;
  /**
   * Where handlers run. `thread`: on the worker's HTTP handler threads, so a runaway handler costs one
   * request a 504 and its thread. `inline`: on the worker's own event loop, without the thread hop (for
   * small, trusted, non-blocking handlers; ≈2× the requests per second in test/bench/http.ts); a handler
   * past its timeout is still answered 504, but one that blocks the loop (a busy loop) stalls the whole
   * worker until its liveness check restarts it. @default 'thread'
   */
  isolation?: 'thread' | 'inline';
}

/** What starts the function. */
export type Trigger = ObjectTrigger | StreamTrigger | HttpTrigger;

/** Micro-batch bounds. */
export interface BatchOptions {
  /** Most records in one batch. @default 100 */
  maxRecords?: number;
  /** Most bytes (inline bodies + keys) in one batch. @default 1048576 (1 MiB) */
  maxBytes?: number;
  /** Longest wait to fill a batch once one record is there. @default '20ms' */
  maxWait?: number | string;
}

/** Retries and dead-lettering. */
export interface RetryOptions {
  /** Attempts per record, the first included; then the record is dead-lettered. @default 5 */
  maxAttempts?: number;
  /** First backoff; doubles each attempt (with ±20% jitter). @default '200ms' */
  initialBackoff?: number | string;
  /** Backoff ceiling. @default '30s' */
  maxBackoff?: number | string;
  /** A record older than this (since its first attempt) is dead-lettered at its next failure. @default '1h' */
  maxRecordAge?: number | string;
  /** Stream receiving dead letters. @default 'dlq-<function>' */
  deadLetterStream?: string;
}

/** Everything a worker process needs. */
export interface WorkerOptions {
  /** Function name: lowercase letters, digits, '-'. */
  function: string;
  /** Absolute path of the function module (default export from defineFunction). */
  module: string;
  trigger: Trigger;
  backend: BackendSpec;
  /** This worker's ordinal, 0..replicas-1. @default 0 */
  ordinal?: number;
  /** Number of workers of the function. @default 1 */
  replicas?: number;
  batch?: BatchOptions;
  retries?: RetryOptions;
  /** Handler threads; 0 runs handlers on the main thread (tests, debugging). @default 1 */
  threads?: number;
  /** Batches in flight in this worker across its shards. @default threads * 2 (at least 1) */
  batchesInFlight?: number;
  /** A handler running longer is stopped, its thread replaced, its batch retried. @default '30s' */
  timeout?: number | string;
  /** Bindings the handler may reach (ctx.data). @default [] */
  bindings?: BindingSpec[];
  /**
   * Chain depth at which a record is dead-lettered (SLUICE_HOP_LIMIT) instead of running: the number of
   * function commits that led to it (runtime/chain.ts). 1..1000.
   * @default $SLUICE_MAX_HOPS when set (the platform's default), else 8
   */
  maxHops?: number;
  /**
   * When the handler throws for a whole batch, run its halves again (recursively) until the failing
   * record is isolated; the halving runs are not counted as attempts, the neighbours commit, and only the
   * failing record is retried / dead-lettered (runtime/bisect.ts). Lambda's BisectBatchOnFunctionError,
   * but on by default. @default true
   */
  bisectOnError?: boolean;
  /** Secrets the handler reads as `ctx.secrets` (resolved values by name; never logged). @default {} */
  secrets?: Record<string, string>;
  /** Lease time-to-live; renewed at a third of it. @default '10s' */
  leaseTtl?: number | string;
  /** SIGTERM grace: in-flight work must finish within it, then the worker exits regardless. @default '25s' */
  shutdownGrace?: number | string;
  /** Port of /metrics, /healthz, /readyz on 127.0.0.1 (0 = any free port; -1 = no server). @default -1 */
  httpPort?: number;
  /** Host the HTTP server binds. @default '127.0.0.1' */
  httpHost?: string;
  /** pino level. @default 'info' */
  logLevel?: string;
  /** Worker identity in leases. @default `<hostname>:<pid>:<ordinal>` */
  id?: string;
  /**
   * Generation of the platform that started this worker (the local driver sets it). A lease held by a
   * worker of an older generation is taken over at once, and a worker that sees a newer generation in
   * the state table exits: a worker orphaned by a killed platform cannot keep its shards. 0 disables
   * both (Kubernetes: the pods outlive the controller). @default 0
   */
  generation?: number;
}

/** {@link WorkerOptions} with every default applied. */
export interface ResolvedWorkerOptions {
  readonly function: string;
  readonly module: string;
  readonly trigger:
    | Readonly<Required<Omit<ObjectTrigger, 'where' | 'feed' | 'query'>> & Pick<ObjectTrigger, 'where' | 'feed' | 'query'>>
    | Readonly<StreamTrigger>
    | Readonly<Required<Omit<HttpTrigger, 'methods'>> & { methods: readonly string[] }>;
  readonly backend: BackendSpec;
  readonly ordinal: number;
  readonly replicas: number;
  readonly batch: { readonly maxRecords: number; readonly maxBytes: number; readonly maxWaitMs: number };
  readonly retries: {
    readonly maxAttempts: number;
    readonly initialBackoffMs: number;
    readonly maxBackoffMs: number;
    readonly maxRecordAgeMs: number;
    readonly deadLetterStream: string;
  };
  readonly threads: number;
  readonly batchesInFlight: number;
  readonly timeoutMs: number;
  readonly bindings: readonly BindingSpec[];
  readonly maxHops: number;
  readonly bisectOnError: boolean;
  readonly secrets: Readonly<Record<string, string>>;
  readonly leaseTtlMs: number;
  readonly shutdownGraceMs: number;
  readonly httpPort: number;
  readonly httpHost: string;
  readonly logLevel: string;
  readonly id: string;
  readonly generation: number;
}

function bad(path: string, msg: string): BindingError {
  return new BindingError('SLUICE_INVALID_ARGUMENT', `worker options: ${path} ${msg}`);
}

function int(v: unknown, path: string, min: number, max: number, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw bad(path, `must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  return v;
}

function bool(v: unknown, path: string, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw bad(path, `must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

/** The platform's default of `maxHops`: $SLUICE_MAX_HOPS (an integer 1..1000), else {@link DEFAULT_MAX_HOPS}. */
function platformMaxHops(): number {
  const env = process.env.SLUICE_MAX_HOPS;
  if (env === undefined || env === '') return DEFAULT_MAX_HOPS;
  return int(Number(env), 'maxHops (from $SLUICE_MAX_HOPS)', 1, 1000, DEFAULT_MAX_HOPS);
}

function dur(v: number | string | undefined, path: string, dflt: number): number {
  if (v === undefined) return dflt;
  try {
    return parseDurationMs(v, path);
  } catch (e) {
    throw bad(path, (e as Error).message.replace(`${path}: `, ''));
  }
}

/** Secrets as a frozen copy of string values (errors name the secret, never its value). */
function checkedSecrets(s: unknown): Readonly<Record<string, string>> {
  if (s === undefined) return Object.freeze({});
  if (typeof s !== 'object' || s === null || Array.isArray(s)) throw bad('secrets', 'must be an object of strings by name');
  for (const [k, v] of Object.entries(s)) if (typeof v !== 'string') throw bad(`secrets.${k}`, 'must be a string');
  return Object.freeze({ ...(s as Record<string, string>) });
}

/** A `where` condition that parses (its syntax error, with line and column, names the option). */
function checkedWhere(where: unknown, path: string): string {
  if (typeof where !== 'string' || where.trim() === '') throw bad(path, 'must be a condition expression');
  try {
    parseCondition(where);
  } catch (e) {
    throw bad(path, (e as Error).message);
  }
  return where;
}

/** Validates and completes worker options; errors name the option path. */
export function resolveWorkerOptions(o: WorkerOptions, hostname = 'localhost'): ResolvedWorkerOptions {
  if (typeof o.function !== 'string' || !/^[a-z0-9][a-z0-9-]{0,62}$/.test(o.function)) throw bad('function', `must be 1-63 lowercase letters, digits or '-', got ${JSON.stringify(o.function)}`);
  if (typeof o.module !== 'string' || o.module.length === 0) throw bad('module', 'must be the path of the function module');
  const t = o.trigger;
  let trigger: ResolvedWorkerOptions['trigger'];
  if (t?.type === 'object') {
    const events = t.events ?? ['put'];
    for (const e of events) if (!['put', 'delete', 'attrs'].includes(e)) throw bad('trigger.events', `holds unknown event type ${JSON.stringify(e)}`);
    trigger = Object.freeze({
      type: 'object' as const,
      bucket: t.bucket,
      events,
      prefix: t.prefix ?? '',
      suffix: t.suffix ?? '',
      inlineBodyMaxBytes: int(t.inlineBodyMaxBytes, 'trigger.inlineBodyMaxBytes', 0, 4 * 1024 * 1024, 65536),
      selfTrigger: bool(t.selfTrigger, 'trigger.selfTrigger', false),
      ...(t.where !== undefined ? { where: checkedWhere(t.where, 'trigger.where') } : {}),
      ...(t.feed !== undefined ? { feed: t.feed } : {}),
      ...(t.query !== undefined ? { query: Object.freeze({ ...t.query, where: checkedWhere(t.query.where, 'trigger.query.where') }) } : {}),
    });
    if (trigger.query !== undefined && trigger.feed === undefined) throw bad('trigger.feed', 'must name the run stream of a scheduled query');
  } else if (t?.type === 'stream') {
    const selfTrigger = bool(t.selfTrigger, 'trigger.selfTrigger', false);
    if (t.cron === undefined) trigger = Object.freeze({ type: 'stream' as const, stream: t.stream, selfTrigger });
    else {
      const c = t.cron;
      try {
        parseCron(c.schedule, c.timezone);
      } catch (e) {
        throw bad('trigger.cron.schedule', `is not a valid cron expression (${(e as Error).message})`);
      }
      if (c.catchUp !== undefined && !['none', 'one', 'all'].includes(c.catchUp)) throw bad('trigger.cron.catchUp', `must be 'none', 'one' or 'all'`);
      if (c.overlap !== undefined && !['skip', 'queue'].includes(c.overlap)) throw bad('trigger.cron.overlap', `must be 'skip' or 'queue'`);
      trigger = Object.freeze({ type: 'stream' as const, stream: t.stream, cron: Object.freeze({ ...c }), selfTrigger });
    }
  } else if (t?.type === 'http') {
    if (typeof t.path !== 'string' || !/^\/\S*$/.test(t.path)) throw bad('trigger.path', "must be a URL path starting with '/'");
    const methods = (t.methods ?? []).map((m) => String(m).toUpperCase());
    if (t.isolation !== undefined && t.isolation !== 'thread' && t.isolation !== 'inline') throw bad('trigger.isolation', "must be 'thread' or 'inline'");
    trigger = Object.freeze({
      type: 'http' as const,
      path: t.path,
      methods: Object.freeze(methods),
      maxBodyBytes: int(t.maxBodyBytes, 'trigger.maxBodyBytes', 0, 1024 * 1024 * 1024, 8 * 1024 * 1024),
      streamBodyBytes: int(t.streamBodyBytes, 'trigger.streamBodyBytes', 0, 1024 * 1024 * 1024, 1024 * 1024),
      concurrency: int(t.concurrency, 'trigger.concurrency', 1, 10_000, 16),
      maxQueue: int(t.maxQueue, 'trigger.maxQueue', 0, 100_000, 64),
      host: t.host ?? '127.0.0.1',
      isolation: t.isolation ?? 'thread',
    });
  } else throw bad('trigger.type', `must be 'object', 'stream' or 'http'`);
  const replicas = int(o.replicas, 'replicas', 1, 1024, 1);
  const ordinal = int(o.ordinal, 'ordinal', 0, replicas - 1, 0);
  const threads = int(o.threads, 'threads', 0, 64, 1);
  const leaseTtlMs = dur(o.leaseTtl, 'leaseTtl', 10_000);
  if (leaseTtlMs < 300) throw bad('leaseTtl', 'must be at least 300ms');
  return Object.freeze({
    function: o.function,
    module: o.module,
    trigger,
    backend: o.backend,
    ordinal,
    replicas,
    batch: Object.freeze({
      maxRecords: int(o.batch?.maxRecords, 'batch.maxRecords', 1, 10_000, 100),
      maxBytes: int(o.batch?.maxBytes, 'batch.maxBytes', 1024, 64 * 1024 * 1024, 1024 * 1024),
      maxWaitMs: dur(o.batch?.maxWait, 'batch.maxWait', 20),
    }),
    retries: Object.freeze({
      maxAttempts: int(o.retries?.maxAttempts, 'retries.maxAttempts', 1, 1000, 5),
      initialBackoffMs: dur(o.retries?.initialBackoff, 'retries.initialBackoff', 200),
      maxBackoffMs: dur(o.retries?.maxBackoff, 'retries.maxBackoff', 30_000),
      maxRecordAgeMs: dur(o.retries?.maxRecordAge, 'retries.maxRecordAge', 3_600_000),
      deadLetterStream: o.retries?.deadLetterStream ?? `dlq-${o.function}`,
    }),
    threads,
    batchesInFlight: int(o.batchesInFlight, 'batchesInFlight', 1, 1024, Math.max(1, threads * 2)),
    timeoutMs: dur(o.timeout, 'timeout', 30_000),
    bindings: Object.freeze([...(o.bindings ?? [])]),
    maxHops: int(o.maxHops, 'maxHops', 1, 1000, platformMaxHops()),
    bisectOnError: bool(o.bisectOnError, 'bisectOnError', true),
    secrets: checkedSecrets(o.secrets),
    leaseTtlMs,
    shutdownGraceMs: dur(o.shutdownGrace, 'shutdownGrace', 25_000),
    httpPort: int(o.httpPort, 'httpPort', -1, 65535, -1),
    httpHost: o.httpHost ?? '127.0.0.1',
    logLevel: o.logLevel ?? 'info',
    id: o.id ?? `${hostname}:${process.pid}:${ordinal}`,
    generation: int(o.generation, 'generation', 0, Number.MAX_SAFE_INTEGER, 0),
  });
}
