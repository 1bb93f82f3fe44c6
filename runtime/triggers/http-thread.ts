/**
 * The task an HTTP handler thread runs: one request in, one response out. The thread loads the function
 * module and opens its declared bindings once (first request), then answers each request with the
 * module's `http` handler. A handler that throws answers 500 (the error travels back serialised); one
 * that runs past its deadline has its thread terminated by the pool (504), so a runaway handler never
 * blocks the worker.
 */
import { pathToFileURL } from 'node:url';
import { MessageChannel, MessagePort, workerData, type TransferListItem } from 'node:worker_threads';
import pino, { type Logger } from 'pino';
import { BindingError, serializeError, type SerializedError } from '../../bindings/errors.ts';
import type { Backend } from '../../bindings/types.ts';
import type { BoundBinding, HttpContext, HttpFunctionDefinition, HttpRequest, HttpResponseBody } from '../../functions/types.ts';
import { openBackend, type BackendSpec } from '../backend-spec.ts';
import type { BindingSpec } from '../batch-types.ts';
import { bindAll } from '../threads/bound-bindings.ts';
import { DeadlineWheel } from './deadline-wheel.ts';
import { sendStream, StreamReceiver } from './http-stream.ts';

/** What every HTTP thread is started with. */
export interface HttpThreadData {
  module: string;
  function: string;
  backend: BackendSpec;
  bindings: BindingSpec[];
  logLevel: string;
  /** The spec's secrets (never the backend token), as handlers see them in `ctx.secrets`. */
  secrets: Record<string, string>;
  /** A handler thread's own channel to its pool (http-pool.ts); absent for inline triggers. */
  port?: MessagePort;
}

/** A request as it crosses to the thread: {@link HttpRequest} but the body stream, which the thread builds. */
export type HttpWireRequest = Omit<HttpRequest, 'bodyStream'>;

/**
 * One request as a task (small bodies travel as transferred ArrayBuffers; a streamed body through
 * `port`, see http-stream.ts).
 */
export interface HttpTask {
  req: HttpWireRequest;
  /** The request body's stream when `req.streamed`. */
  port?: MessagePort;
  deadlineMs: number;
  /** A warm-up task: load the module and bindings, answer 204, call no handler. */
  warm?: boolean;
}

/**
 * The task's answer: a whole response, the handler's error, or — for a streamed response body — the
 * port its head and chunks arrive on (http-stream.ts), sent on after the task has returned.
 */
export type HttpTaskResult = { ok: true; status: number; headers: Record<string, string>; body: Uint8Array | string } | { ok: false; error: SerializedError } | MessagePort;

interface Loaded {
  def: HttpFunctionDefinition;
  data: Readonly<Record<string, BoundBinding>>;
  backend: Backend;
}

const EMPTY = new Uint8Array(0);

function isStream(body: HttpResponseBody | undefined): body is AsyncIterable<Uint8Array> {
  return typeof body === 'object' && body !== null && !(body instanceof Uint8Array) && typeof (body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator] === 'function';
}

async function* oneChunk(b: Uint8Array): AsyncIterable<Uint8Array> {
  if (b.byteLength > 0) yield b;
}

/** The error a request rejects with at its deadline, inline or on the pool (the caller answers 504). */
export function timeoutError(): Error {
  return Object.assign(new Error('the handler ran past its deadline'), { name: 'TimeoutError' });
}

/**
 * What a handler sees besides the request. A class, not an object literal: the literal's per-request
 * getters showed in the worker's profile. The logger and `signal` are made on first use (most handlers
 * never log, and one AbortController per request was the largest allocation of a hello-world).
 */
class RequestContext implements HttpContext {
  readonly function: string;
  readonly data: Readonly<Record<string, BoundBinding>>;
  readonly secrets: Readonly<Record<string, string>>;
  readonly deadline: number;
  readonly #log: Logger;
  readonly #requestId: string;
  #child: Logger | undefined;
  #ac: AbortController | undefined;
  #expired = false;

  constructor(fn: string, data: Readonly<Record<string, BoundBinding>>, secrets: Readonly<Record<string, string>>, deadline: number, log: Logger, requestId: string) {
    this.function = fn;
    this.data = data;
    this.secrets = secrets;
    this.deadline = deadline;
    this.#log = log;
    this.#requestId = requestId;
  }

  get log(): Logger {
    return (this.#child ??= this.#log.child({ requestId: this.#requestId }));
  }

  /** Aborted once the deadline passed; asked for after it, already aborted. */
  get signal(): AbortSignal {
    if (this.#ac === undefined) {
      this.#ac = new AbortController();
      if (this.#expired) this.#ac.abort();
    }
    return this.#ac.signal;
  }

  /** The deadline passed (static: not a method handlers see on their ctx). */
  static expire(c: RequestContext): void {
    c.#expired = true;
    c.#ac?.abort();
  }
}

/**
 * The handler's response headers with lower-case names (so that the trigger's own content-type,
 * content-length and x-request-id never go out twice in two spellings), each value a string or a list of
 * strings: anything else is the handler's error, named.
 */
function responseHeaders(given: Record<string, unknown> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (given === undefined || given === null) return out;
  for (const k of Object.keys(given)) {
    const v = given[k];
    if (v === undefined || v === null) continue;
    if (typeof v === 'string') out[k.toLowerCase()] = v;
    else if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') out[k.toLowerCase()] = String(v);
    else if (Array.isArray(v) && v.every((x) => typeof x === 'string')) (out as Record<string, unknown>)[k.toLowerCase()] = [...v];
    else throw new BindingError('SLUICE_INVALID_ARGUMENT', `http handler: header '${k}' must be a string, a number, a boolean or a list of strings, got ${typeof v}`);
  }
  return out;
}

/** Runs an HTTP function's handler: as a task in a handler thread (http-pool.ts), or inline. */
export interface HttpRunner {
  /** One task in a handler thread: the deadline aborts `ctx.signal` (the pool terminates a runaway thread). */
  task(task: HttpTask): Promise<HttpTaskResult>;
  /**
   * One request on the caller's event loop (`isolation: inline`): rejects with a TimeoutError at
   * `deadlineMs` (aborting `ctx.signal`); nothing can stop the handler itself, its late answer is dropped.
   */
  inline(req: HttpWireRequest, deadlineMs: number, port?: MessagePort): Promise<HttpTaskResult>;
  /** Settles once the module and bindings loaded (or failed to: requests then retry the load). */
  loaded(): Promise<void>;
}

/**
 * The request function of one handler thread — or of the worker's main thread for an `isolation: inline`
 * trigger (runtime/triggers/http.ts): loads the module and bindings (starting now), then answers tasks.
 */
export function httpHandler(d: HttpThreadData, thread: 'http' | 'http-inline' = 'http'): HttpRunner {
  const secrets: Readonly<Record<string, string>> = Object.freeze({ ...d.secrets });
  const wheel = new DeadlineWheel();
  const log = pino({ level: d.logLevel, base: { function: d.function, thread } }, pino.destination(2));
  // Loading starts with the thread, so the first request does not pay for it within its timeout.
  let loaded: Promise<Loaded> | undefined = load();
  loaded.catch(() => undefined);
  /** The loaded module once its load succeeded: requests then skip awaiting the load. */
  let ready: Loaded | undefined;

  async function load(): Promise<Loaded> {
    const mod = (await import(pathToFileURL(d.module).href)) as { default?: HttpFunctionDefinition };
    const def = mod.default;
    if (!def || typeof def.http !== 'function') throw new BindingError('SLUICE_INVALID_ARGUMENT', `function module ${d.module} has no default export from defineHttpFunction (an http handler)`);
    const backend = await openBackend(d.backend);
    const data = await bindAll(backend, d.bindings);
    await def.init?.({ function: d.function, log, data, secrets });
    return (ready = { def, data, backend });
  }

  /**
   * Runs the handler on `wire` and shapes its answer. `started` receives the request's ctx before the
   * handler runs (the caller's deadline expires it). Never rejects: a failure is the `ok: false` result.
   */
  async function run(wire: HttpWireRequest, port: MessagePort | undefined, deadlineMs: number, warm: boolean, started: (ctx: RequestContext) => void): Promise<HttpTaskResult> {
    // The request port stays open while a streamed response may still read the request (an echo).
    let keepPort = false;
    try {
      const { def, data } = ready ?? (await (loaded ??= load()));
      if (warm) return { ok: true, status: 204, headers: {}, body: EMPTY };
      const req: HttpRequest = {
        method: wire.method,
        path: wire.path,
        query: wire.query,
        headers: wire.headers,
        body: wire.body,
        streamed: wire.streamed,
        requestId: wire.requestId,
        bodyStream: port ? new StreamReceiver(port) : oneChunk(wire.body),
      };
      const ctx = new RequestContext(d.function, data, secrets, deadlineMs, log, wire.requestId);
      started(ctx);
      const res = await def.http(req, ctx);
      const status = res?.status ?? 200;
      if (!Number.isInteger(status) || status < 100 || status > 599) throw new BindingError('SLUICE_INVALID_ARGUMENT', `http handler: status must be an integer 100-599, got ${JSON.stringify(status)}`);
      const headers = responseHeaders(res?.headers);
      const typed = headers['content-type'] !== undefined;
      const body = res?.body;
      if (isStream(body)) {
        if (!typed) headers['content-type'] = 'application/octet-stream';
        const { port1, port2 } = new MessageChannel();
        keepPort = true;
        // Sent on after this task returns, within the same deadline (http-stream.ts cuts it past it).
        void sendStream(port1, body, { head: { status, headers }, deadlineMs }).finally(() => port?.close());
        return port2;
      }
      if (body !== undefined && typeof body !== 'string' && !(body instanceof Uint8Array))
        throw new BindingError('SLUICE_INVALID_ARGUMENT', 'http handler: body must be a string, a Uint8Array or an async iterable of Uint8Array chunks');
      if (!typed && body !== undefined && body.length > 0) headers['content-type'] = typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/octet-stream';
      return { ok: true, status, headers, body: body ?? EMPTY };
    } catch (e) {
      // A load failure is retried by the next request (a module fixed under live reload loads then).
      if (ready === undefined && loaded !== undefined && (await loaded.then(() => false, () => true))) loaded = undefined;
      return { ok: false, error: serializeError(e) };
    } finally {
      if (!keepPort) port?.close();
    }
  }

  const none = (): void => undefined;
  return {
    async task(task: HttpTask): Promise<HttpTaskResult> {
      let ctx: RequestContext | undefined;
      let expired = false;
      const timer = task.warm ? undefined : wheel.at(task.deadlineMs, () => {
        expired = true;
        if (ctx) RequestContext.expire(ctx);
      });
      try {
        return await run(task.req, task.port, task.deadlineMs, task.warm === true, (c) => {
          ctx = c;
          if (expired) RequestContext.expire(c);
        });
      } finally {
        timer?.cancel();
      }
    },
    inline(wire: HttpWireRequest, deadlineMs: number, port?: MessagePort): Promise<HttpTaskResult> {
      return new Promise((resolve, reject) => {
        let ctx: RequestContext | undefined;
        let late = false;
        // One wheel slot per request: it both aborts ctx.signal and answers the caller.
        const timer = wheel.at(deadlineMs, () => {
          late = true;
          if (ctx) RequestContext.expire(ctx);
          reject(timeoutError());
        });
        run(wire, port, deadlineMs, false, (c) => (ctx = c)).then((r) => {
          timer.cancel();
          if (late && r instanceof MessagePort) r.close();
          resolve(r);
        }, none);
      });
    },
    loaded(): Promise<void> {
      return (loaded ?? Promise.resolve()).then(none, none);
    },
  };
}

/** One request as it travels to a thread (`id` matches its result). */
export interface HttpPoolRequest {
  id: number;
  task: HttpTask;
}

/** One result as it travels back. */
export interface HttpPoolResult {
  id: number;
  r: HttpTaskResult;
}

/** What a handler thread sends its pool: a turn's results, or (once) that its module loaded. */
export type HttpThreadMessage = HttpPoolResult[] | { t: 'ready' };

/**
 * A handler thread's loop (http-pool.ts is the other side): each message is a batch of requests; their
 * results go back in one message per event-loop turn, a streamed answer's port transferred with it.
 */
export function serveHttpThread(): void {
  const d = workerData as HttpThreadData | undefined;
  const port = d?.port;
  if (port === undefined) throw new BindingError('SLUICE_INTERNAL', 'serveHttpThread runs in an HTTP handler thread only (its pool passes a port)');
  const runner = httpHandler(d!);
  void runner.loaded().then(() => port.postMessage({ t: 'ready' } satisfies HttpThreadMessage));
  let out: HttpPoolResult[] = [];
  let transfer: TransferListItem[] = [];
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    const o = out;
    const t = transfer;
    out = [];
    transfer = [];
    try {
      port.postMessage(o, t);
    } catch {
      // One result cannot be cloned: the others still go; that one becomes its error.
      for (const x of o) {
        try {
          port.postMessage([x], x.r instanceof MessagePort ? [x.r] : []);
        } catch (e) {
          port.postMessage([{ id: x.id, r: { ok: false, error: serializeError(new BindingError('SLUICE_INVALID_ARGUMENT', `http handler: its answer cannot be passed back: ${(e as Error).message}`)) } }]);
        }
      }
    }
  };
  port.on('message', (batch: HttpPoolRequest[]) => {
    for (const { id, task } of batch)
      // task() never rejects: a failure is its `ok: false` result.
      void runner.task(task).then((r) => {
        out.push({ id, r });
        if (r instanceof MessagePort) transfer.push(r);
        if (!scheduled) {
          scheduled = true;
          setImmediate(flush);
        }
      });
  });
}
