/**
 * The task an HTTP handler thread runs: one request in, one response out. The thread loads the function
 * module and opens its declared bindings once (first request), then answers each request with the
 * module's `http` handler. A handler that throws answers 500 (the error travels back serialised); one
 * that runs past its deadline has its thread terminated by the pool (504), so a runaway handler never
 * blocks the worker.
 */
import { pathToFileURL } from 'node:url';
import { MessageChannel, workerData, type MessagePort } from 'node:worker_threads';
import pino from 'pino';
import { Piscina } from 'piscina';
import { BindingError, serializeError, type SerializedError } from '../../bindings/errors.ts';
import type { Backend } from '../../bindings/types.ts';
import type { BoundBinding, HttpFunctionDefinition, HttpRequest, HttpResponseBody } from '../../functions/types.ts';
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
export type HttpTaskResult = { ok: true; status: number; headers: Record<string, string>; body: Uint8Array } | { ok: false; error: SerializedError } | MessagePort;

interface Loaded {
  def: HttpFunctionDefinition;
  data: Readonly<Record<string, BoundBinding>>;
  backend: Backend;
}

function bytesOf(body: string | Uint8Array | undefined): Uint8Array {
  if (body === undefined) return new Uint8Array(0);
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  return body;
}

function isStream(body: HttpResponseBody | undefined): body is AsyncIterable<Uint8Array> {
  return typeof body === 'object' && body !== null && !(body instanceof Uint8Array) && typeof (body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator] === 'function';
}

async function* oneChunk(b: Uint8Array): AsyncIterable<Uint8Array> {
  if (b.byteLength > 0) yield b;
}

/**
 * The request function of one handler thread — or of the worker's main thread for an `isolation: inline`
 * trigger (runtime/triggers/http.ts): loads the module and bindings (starting now), then answers tasks.
 */
export function httpHandler(d: HttpThreadData, thread: 'http' | 'http-inline' = 'http'): (task: HttpTask) => Promise<HttpTaskResult> {
  const secrets: Readonly<Record<string, string>> = Object.freeze({ ...d.secrets });
  const wheel = new DeadlineWheel();
  const log = pino({ level: d.logLevel, base: { function: d.function, thread } }, pino.destination(2));
  // Loading starts with the thread, so the first request does not pay for it within its timeout.
  let loaded: Promise<Loaded> | undefined = load();
  loaded.catch(() => undefined);

  async function load(): Promise<Loaded> {
    const mod = (await import(pathToFileURL(d.module).href)) as { default?: HttpFunctionDefinition };
    const def = mod.default;
    if (!def || typeof def.http !== 'function') throw new BindingError('SLUICE_INVALID_ARGUMENT', `function module ${d.module} has no default export from defineHttpFunction (an http handler)`);
    const backend = await openBackend(d.backend);
    const data = await bindAll(backend, d.bindings);
    await def.init?.({ function: d.function, log, data, secrets });
    return { def, data, backend };
  }

  return async function handle(task: HttpTask): Promise<HttpTaskResult> {
    try {
      loaded ??= load();
      const { def, data } = await loaded;
      if (task.warm) return { ok: true, status: 204, headers: {}, body: new Uint8Array(0) };
      // ctx.signal's controller is made on first use (most handlers never look): one per request showed
      // in the profile. Asked for after the deadline, it is already aborted.
      let ac: AbortController | undefined;
      let expired = false;
      const timer = wheel.at(task.deadlineMs, () => {
        expired = true;
        ac?.abort();
      });
      // The request port stays open while a streamed response may still read the request (an echo).
      let keepPort = false;
      try {
        const req: HttpRequest = { ...task.req, bodyStream: task.port ? new StreamReceiver(task.port) : oneChunk(task.req.body) };
        let child: typeof log | undefined;
        const requestId = task.req.requestId;
        const ctx = {
          function: d.function,
          // Made on first use: a child logger per request showed in the profile, and most handlers never log.
          get log() {
            return (child ??= log.child({ requestId }));
          },
          data,
          secrets,
          get signal() {
            if (ac === undefined) {
              ac = new AbortController();
              if (expired) ac.abort();
            }
            return ac.signal;
          },
          deadline: task.deadlineMs,
        };
        const res = await def.http(req, ctx);
        const status = res?.status ?? 200;
        if (!Number.isInteger(status) || status < 100 || status > 599) throw new BindingError('SLUICE_INVALID_ARGUMENT', `http handler: status must be an integer 100-599, got ${JSON.stringify(status)}`);
        const headers = { ...(res?.headers ?? {}) };
        const typed = Object.keys(headers).some((h) => h.toLowerCase() === 'content-type');
        if (isStream(res?.body)) {
          if (!typed) headers['content-type'] = 'application/octet-stream';
          const { port1, port2 } = new MessageChannel();
          keepPort = true;
          // Sent on after this task returns, within the same deadline (http-stream.ts cuts it past it).
          void sendStream(port1, res.body, { head: { status, headers }, deadlineMs: task.deadlineMs }).finally(() => task.port?.close());
          return Piscina.move(port2) as MessagePort;
        }
        if (res?.body !== undefined && typeof res.body !== 'string' && !(res.body instanceof Uint8Array))
          throw new BindingError('SLUICE_INVALID_ARGUMENT', 'http handler: body must be a string, a Uint8Array or an async iterable of Uint8Array chunks');
        const body = bytesOf(res?.body);
        if (!typed && body.byteLength > 0) headers['content-type'] = typeof res?.body === 'string' ? 'text/plain; charset=utf-8' : 'application/octet-stream';
        return { ok: true, status, headers, body };
      } finally {
        timer.cancel();
        if (!keepPort) task.port?.close();
      }
    } catch (e) {
      // A load failure is retried by the next request (a module fixed under live reload loads then).
      if (loaded !== undefined && (await loaded.then(() => false, () => true))) loaded = undefined;
      return { ok: false, error: serializeError(e) };
    }
  };
}

/** piscina's task function (the main thread imports this module too, for inline triggers: no workerData). */
export default workerData ? httpHandler(workerData as HttpThreadData) : undefined;
