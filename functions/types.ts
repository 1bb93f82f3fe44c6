/**
 * The public authoring API of sluice: what a handler receives and what it may do.
 *
 * A handler gets one micro-batch of records (`handler(records, ctx)`). Records are views over the
 * batch in shared memory: reading `key`, `size` or an attribute decodes just that field in place.
 * Effects are declared, not performed: `record.setAttrs(...)`, `record.update(...)` and `ctx.count(...)`
 * are collected and committed by the runtime exactly once in effect, together with the function's
 * processed-marker for the object (DESIGN invariant 2).
 */
import type { Logger } from 'pino';
import type { Attrs, Expression, FileBinding, KvBinding, ObjectBinding, StreamBinding, Value } from '../bindings/types.ts';

export type { Attrs, Expression, Value } from '../bindings/types.ts';

/** Event types a record can carry: object changes, and `record` for user-stream records. */
export const EventTypes = { put: 'put', delete: 'delete', attrs: 'attrs', record: 'record' } as const;
/** One of {@link EventTypes}. */
export type EventType = keyof typeof EventTypes;

/** Options of {@link EventRecord.fail}. */
export interface FailOptions {
  /** Retry this record no sooner than this (ms, or a duration like '30s'). @default the function's backoff */
  retryAfter?: number | string;
  /** Send the record to the dead-letter stream at once, without further attempts. @default false */
  nonRetryable?: boolean;
}

/** One record of a batch. */
export interface EventRecord {
  /** Object key, or the partition key of a stream record ('' when none). */
  readonly key: string;
  readonly type: EventType;
  /** Bucket of an object change, or stream name of a stream record. */
  readonly source: string;
  readonly shard: number;
  /** Sequence of the change record / stream record in its shard. */
  readonly seq: number;
  /** Object version after the change (0 for stream records). */
  readonly version: number;
  /** Body size in bytes (object) or payload size (stream record). */
  readonly size: number;
  readonly etag: string;
  readonly mtime: Date;
  readonly contentType: string;
  /** Attributes of the object when the batch was formed (empty for stream records and deletes). */
  readonly attrs: Readonly<Attrs>;
  /** Stream record headers (empty for object changes). */
  readonly headers: Readonly<Record<string, string>>;
  /** This record's delivery attempt, starting at 1. */
  readonly attempt: number;
  /**
   * The body when it was prefetched with the batch ("data push": bodies up to the trigger's
   * `inlineBodyMaxBytes`), or a stream record's payload; undefined otherwise — use {@link data}.
   */
  readonly body: Uint8Array | undefined;
  /** The body (or a range of it), from the batch when prefetched, else read from the bucket. */
  data(range?: { start?: number; end?: number }): Promise<Uint8Array>;
  /** Body as UTF-8 text (convenience over {@link data}). */
  text(): Promise<string>;
  /**
   * A filesystem path of a read-only file holding the object's body, for libraries that only take a
   * path (`sharp(await record.path())`). Valid at least until the handler returns (the file is kept
   * for the handler timeout, then may be evicted). Written once per object version and thread: from
   * the batch's shared memory when the body was prefetched, else streamed from the bucket. The file's
   * name keeps the key's last segment (so its extension). SLUICE_NOT_FOUND for a deleted object,
   * SLUICE_INVALID_ARGUMENT for a stream record (it has no object).
   */
  path(): Promise<string>;
  /** Sets attributes of the object (merged with other effects of this record; committed exactly once). */
  setAttrs(attrs: Attrs): void;
  /** Removes attributes of the object. */
  removeAttrs(...names: string[]): void;
  /** An update expression on the object's attributes (`ADD hits :one`), committed with the other effects. */
  update(expr: Expression): void;
  /** Marks this record failed (partial batch failure): it is retried; later records of its key wait for it. */
  fail(error: Error | string, options?: FailOptions): void;
  /**
   * Effects beyond this record's object, declared like `setAttrs` and committed by the runtime with
   * exactly-once effect per triggering record: KV item updates, stream records to emit, attribute
   * updates on other objects — each through a binding the spec declares `read-write` (named by its
   * binding name, as in `ctx.data`). `ctx.data` calls write at once and are at-least-once (a
   * redelivered record writes again); these are not (docs/RUNTIME.md "Effects beyond the triggering object").
   */
  readonly effects: DeclaredEffects;
}

/**
 * What a handler can declare beyond the triggering object, for one record. On the record rather than
 * on `ctx` because each effect belongs to one triggering record: it is idempotent per (function,
 * record), it commits only when that record succeeds, and it is retried and dead-lettered with it.
 */
export interface DeclaredEffects {
  /** Updates of items of the KV table behind binding `binding` (kind `kv`, access `read-write`). */
  kv(binding: string): KvEffects;
  /** Records to append to the stream behind binding `binding` (kind `stream`, access `read-write`). */
  stream(binding: string): StreamEffects;
  /** Attribute updates of objects of the bucket behind binding `binding` (kind `object`, access `read-write`). */
  object(binding: string): ObjectEffects;
}

/** Effect-mode KV writes (see {@link DeclaredEffects.kv}). */
export interface KvEffects {
  /**
   * An update expression on item `key` (created when absent), e.g. `ADD count :one` or
   * `SET latitude = :lat`. Applied once per triggering record however often the record is delivered;
   * several updates of one record apply in order.
   */
  update(key: string, update: Expression): void;
}

/** A record to emit as an effect (see {@link DeclaredEffects.stream}). */
export interface EmitRecord {
  data: Uint8Array | string;
  /** Hashed to the shard. @default the triggering record's key (shard 0 when that is empty) */
  partitionKey?: string;
  /** @default {} */
  headers?: Record<string, string>;
}

/** Effect-mode stream appends (see {@link DeclaredEffects.stream}). */
export interface StreamEffects {
  /** Appends `record` once per triggering record (de-duplicated by function + record + position). */
  put(record: EmitRecord): void;
}

/** Effect-mode attribute updates on other objects (see {@link DeclaredEffects.object}). */
export interface ObjectEffects {
  /**
   * An update expression on the attributes of object `key` (which must exist: a missing object's
   * update is skipped and logged). Written through the bucket's normal attribute write, so it makes a
   * change record like any other attribute change.
   */
  updateAttrs(key: string, update: Expression): void;
}

/**
 * A bucket's objects as read-only files (binding kind `object-files`): paths are `<bucket>/<key>`,
 * every write is SLUICE_ACCESS_DENIED, only the declared bucket is reachable.
 */
export interface ObjectFilesBinding extends FileBinding {
  /** Host filesystem path of the file holding `<bucket>/<key>`'s body, for path-only libraries. */
  localPath(path: string): Promise<string>;
}

/** A binding as a handler sees it: only what the function's spec declares, with the declared access. */
export type BoundBinding = ObjectBinding | KvBinding | StreamBinding | FileBinding | ObjectFilesBinding;

/** What a handler receives besides its records. */
export interface HandlerContext {
  /** Function name. */
  readonly function: string;
  /** Shard the batch came from. */
  readonly shard: number;
  /** Unique id of this batch delivery. */
  readonly batchId: string;
  /** Adds `n` to a named counter of the function (exact: committed with the batch's sequence range). */
  count(name: string, n?: number): void;
  /** Structured logger carrying function, shard and batch. */
  readonly log: Logger;
  /** The bindings declared in the spec, by name. Undeclared names are absent. */
  readonly data: Readonly<Record<string, BoundBinding>>;
  /**
   * The spec's `secrets`, resolved (from `fromEnv` or `value`) by name; a NATS backend's `tokenSecret`
   * is not among them (the handler reaches the backend only through its bindings). Never log them.
   */
  readonly secrets: Readonly<Record<string, string>>;
  /** Aborted when the handler's timeout passes or the worker shuts down. */
  readonly signal: AbortSignal;
  /** Epoch ms by which the handler must return. */
  readonly deadline: number;
}

/** A handler: inspects a batch and declares effects. Throwing fails the whole batch (retried). */
export type Handler = (records: EventRecord[], ctx: HandlerContext) => void | Promise<void>;

/** What `init` receives: the bindings and a logger, once per handler thread. */
export interface InitContext {
  readonly function: string;
  readonly log: Logger;
  readonly data: Readonly<Record<string, BoundBinding>>;
  /** The spec's secrets by name, as {@link HandlerContext.secrets}. */
  readonly secrets: Readonly<Record<string, string>>;
}

/** A function definition as a module exports it (`export default defineFunction({...})`). */
export interface FunctionDefinition {
  /** Runs once per handler thread before the first batch. @default none */
  init?: (ctx: InitContext) => void | Promise<void>;
  handler: Handler;
}

/** An HTTP request as an HTTP-triggered function receives it. */
export interface HttpRequest {
  /** Upper-case method: GET, POST, … */
  readonly method: string;
  /** The path as requested, without the query string. */
  readonly path: string;
  /** Query parameters (the last value of a repeated one). */
  readonly query: Readonly<Record<string, string>>;
  /** Request headers, names lower-case. */
  readonly headers: Readonly<Record<string, string>>;
  /**
   * The whole request body when it is at most the trigger's `streamBodyBytes` (1 MiB by default); empty
   * when there is none, and empty when the body is streamed (`streamed` true).
   */
  readonly body: Uint8Array;
  /** True when the body is larger than `streamBodyBytes` and arrives only through {@link bodyStream}. */
  readonly streamed: boolean;
  /**
   * The body as chunks, whatever its size (a small body is one chunk): a handler that reads bodies this
   * way works for both. Chunks arrive as the handler pulls them (backpressure back to the client);
   * `break` stops the upload. Read it once. At most `maxBodyBytes` in all (past it the iteration throws
   * SLUICE_VALUE_TOO_LARGE and the caller gets 413).
   */
  readonly bodyStream: AsyncIterable<Uint8Array>;
  /** The request id, also sent back in `x-request-id` and named in error responses and logs. */
  readonly requestId: string;
}

/** What an HTTP handler returns. */
export interface HttpResponse {
  /** @default 200 */
  status?: number;
  /** Response headers. @default none (content-type: text/plain for a string body, application/octet-stream for bytes) */
  headers?: Record<string, string>;
  /**
   * A string or bytes are sent whole (with content-length). An async iterable of chunks — a generator,
   * a web `ReadableStream`, or an Object binding's `getStream(key).body` — is streamed to the caller with
   * backpressure (chunked, or with the `content-length` header the handler sets), so a large object never
   * sits whole in the worker. The spec's `timeout` covers the stream too. @default empty
   */
  body?: HttpResponseBody;
}

/** What an HTTP handler may answer with: whole (string, bytes) or streamed (chunks). */
export type HttpResponseBody = string | Uint8Array | AsyncIterable<Uint8Array>;

/**
 * What an HTTP handler receives besides the request: the declared bindings, a logger, a deadline.
 * `log` and `signal` are getters (made on first use), so a copy made by spreading (`{...ctx}`) lacks
 * them: pass `ctx` itself on, or read them first.
 */
export interface HttpContext {
  readonly function: string;
  readonly log: Logger;
  readonly data: Readonly<Record<string, BoundBinding>>;
  /** The spec's secrets by name (never the backend's token). */
  readonly secrets: Readonly<Record<string, string>>;
  /** Aborted when the request's timeout passes. */
  readonly signal: AbortSignal;
  /** Epoch ms by which the handler must answer (else the caller gets 504). */
  readonly deadline: number;
}

/** An HTTP handler: answers one request. Throwing answers 500 with the request id. */
export type HttpHandler = (req: HttpRequest, ctx: HttpContext) => HttpResponse | Promise<HttpResponse>;

/** An HTTP-triggered function as a module exports it (`export default defineHttpFunction({...})`). */
export interface HttpFunctionDefinition {
  /** Runs once per handler thread before the first request. @default none */
  init?: (ctx: InitContext) => void | Promise<void>;
  http: HttpHandler;
}

/** Marks a definition as an HTTP-triggered sluice function; returns it unchanged (typed). */
export function defineHttpFunction<T extends HttpFunctionDefinition>(def: T): T {
  if (typeof def !== 'object' || def === null || typeof def.http !== 'function') throw new TypeError('defineHttpFunction: http must be a function');
  if (def.init !== undefined && typeof def.init !== 'function') throw new TypeError('defineHttpFunction: init must be a function');
  return def;
}

/** Marks a definition as a sluice function; returns it unchanged (typed). */
export function defineFunction<T extends FunctionDefinition>(def: T): T {
  if (typeof def !== 'object' || def === null || typeof def.handler !== 'function') throw new TypeError('defineFunction: handler must be a function');
  if (def.init !== undefined && typeof def.init !== 'function') throw new TypeError('defineFunction: init must be a function');
  return def;
}

/** Parses a duration: a number of ms, or '250ms', '30s', '5m', '1h'. */
export function parseDurationMs(d: number | string, where: string): number {
  if (typeof d === 'number' && Number.isFinite(d) && d >= 0) return d;
  const m = typeof d === 'string' ? /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)$/.exec(d.trim()) : null;
  if (!m) throw new TypeError(`${where}: ${JSON.stringify(d)} is not a duration (a number of ms, or like '250ms', '30s', '5m', '1h')`);
  const n = Number(m[1]);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  return n * unit;
}

/** Thrown by a handler: retry the batch (or the record, with `record.fail`) no sooner than `after`. */
export class RetryAfterError extends Error {
  readonly retryAfterMs: number;
  constructor(message: string, after: number | string) {
    super(message);
    this.name = 'RetryAfterError';
    this.retryAfterMs = parseDurationMs(after, 'RetryAfterError');
  }
}

/** Thrown by a handler: do not retry; the batch's records go to the dead-letter stream. */
export class NonRetryableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NonRetryableError';
  }
}

/** Re-exported for handler authors who build attribute values. */
export type AttrValue = Value;
