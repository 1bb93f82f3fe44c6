/**
 * The HTTP trigger, worker side: a `node:http` server on the worker (a free port by default) whose requests
 * run the function's `http` handler on a small pool of handler threads (http-pool.ts), registered in the state
 * table (`http/<function>/<ordinal>`) so the platform's ingress (controller/http-ingress.ts) can route to it.
 *
 * Why threads and not the worker's event loop: a handler that loops forever must cost one request a 504,
 * not the worker its liveness. A request past the timeout terminates the thread it runs on, which the pool
 * replaces that thread. Capacity is bounded twice — `concurrency` requests per thread and `maxQueue`
 * waiting — and a request past both is answered 429 with Retry-After, never queued without bound.
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { MessageChannel, MessagePort } from 'node:worker_threads';
import type { Logger } from 'pino';
import { Histogram, type Registry } from 'prom-client';
import { BindingError, serializeError } from '../../bindings/errors.ts';
import type { KvBinding } from '../../bindings/types.ts';
import { StateKeys } from '../state.ts';
import type { HttpTrigger, ResolvedWorkerOptions } from '../worker-options.ts';

export type { HttpTrigger };
import { endWithBody } from './http-body.ts';
import { longestRoute, pipeRequest, pipeTargetOf, type HttpHandOff, type PipeTarget } from './http-handoff.ts';
import { sendStream, StreamReceiver } from './http-stream.ts';
import { HttpThreadPool } from './http-pool.ts';
import { httpHandler, type HttpRunner, type HttpTask, type HttpTaskResult, type HttpThreadData } from './http-thread.ts';

const BOOTSTRAP = fileURLToPath(new URL('./http-bootstrap.mjs', import.meta.url));
/** How often a worker refreshes its registration (the ingress ignores ones older than 3×). */
export const HTTP_HEARTBEAT_MS = 2_000;

/**
 * How long a worker's HTTP server keeps an idle keep-alive connection open (Node's default is 5 s). The
 * ingress drops its idle connections to a worker after a fifth of it ({@link INGRESS_IDLE_SOCKET_MS}), so
 * unless its event loop stalls for 8 s it does not send a request on a connection the worker is closing at
 * that moment (which fails the request with ECONNRESET — a 502 — when the ingress is late to see the FIN).
 */
export const WORKER_KEEP_ALIVE_MS = 10_000;

/** How long the ingress keeps an idle connection to a worker for reuse (see {@link WORKER_KEEP_ALIVE_MS}). */
export const INGRESS_IDLE_SOCKET_MS = WORKER_KEEP_ALIVE_MS / 5;

/** A worker's registration as stored in the state table. */
export interface HttpRegistration {
  url: string;
  at: number;
  /** The worker's process id: the ingress hands connections to it when it is its child (http-handoff.ts). */
  pid?: number;
}

/** Answers a JSON body (the trigger's own answers: errors, 405, 429 …), with the request id when there is one. */
function send(res: ServerResponse, status: number, body: unknown, requestId?: string, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), ...(requestId === undefined ? {} : { 'x-request-id': requestId }), ...headers });
  res.end(text);
}

const EMPTY = new Uint8Array(0);

/** A path that `new URL()` would leave as it is (no dot segments, nothing to percent-encode). */
const PLAIN_PATH = /^\/[\w\-.~/!$&'()*+,;=:@%]*$/;

/** The path and query of a request target; `new URL()` only when the path needs normalising. */
export function splitTarget(target: string): { path: string; query: string } {
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  if (PLAIN_PATH.test(path) && !path.includes('/.') && !path.includes('%')) return { path, query: q < 0 ? '' : target.slice(q + 1) };
  const url = new URL(target, 'http://x');
  return { path: url.pathname, query: url.search.slice(1) };
}

/**
 * Whether a request has a body to read. HTTP/1.1: one without content-length or transfer-encoding has
 * none (node dumps the rest); most GETs then skip the async body read and its iterator.
 */
function hasBody(req: IncomingMessage): boolean {
  const declared = req.headers['content-length'];
  return declared === undefined ? req.headers['transfer-encoding'] !== undefined : Number(declared) !== 0;
}

const NO_BODY: ReadBody = { body: EMPTY };

/** Most bytes of an oversized body read and discarded before answering 413 (then the connection closes). */
const DISCARD_MAX_BYTES = 64 * 1024 * 1024;

/** A request body as read so far: whole (`body`), too large (`over`), or to be streamed (`stream`). */
type ReadBody = { body: Uint8Array } | { over: true } | { stream: RequestBodyStream };

/**
 * Reads the body of a request that has one ({@link hasBody}) whole when it is at most `streamAt` bytes, else hands it on as a stream (see
 * {@link RequestBodyStream}). A body declared (content-length) past `max` is read and dropped (up to
 * 64 MiB) so that the client, still sending, gets the 413 instead of a reset.
 */
async function readBody(req: IncomingMessage, max: number, streamAt: number): Promise<ReadBody> {
  const declared = req.headers['content-length'] === undefined ? undefined : Number(req.headers['content-length']);
  // Not destroyed on an early return: the response still goes out on this socket.
  const it = req.iterator({ destroyOnReturn: false });
  if (declared !== undefined && declared > max) {
    let n = 0;
    for await (const c of it as AsyncIterable<Buffer>) if ((n += c.byteLength) > DISCARD_MAX_BYTES) break;
    return { over: true };
  }
  const chunks: Buffer[] = [];
  let n = 0;
  // A body of unknown length is read whole while it stays small: small bodies keep arriving as bytes.
  if (declared === undefined || declared <= streamAt) {
    for (;;) {
      const r = await it.next();
      if (r.done) return n > max ? { over: true } : { body: new Uint8Array(Buffer.concat(chunks)) };
      chunks.push(r.value as Buffer);
      n += (r.value as Buffer).byteLength;
      if (n > streamAt) break;
    }
  }
  return { stream: new RequestBodyStream(req, it as AsyncIterator<Buffer>, chunks, max) };
}

/**
 * A request body streamed to the handler: the chunks read before deciding, then the rest of the socket's.
 * Past `max` bytes it fails with SLUICE_VALUE_TOO_LARGE and marks itself `over` (the answer is then
 * 413). Ended early (the handler stopped reading), the rest of the body is read and dropped.
 */
class RequestBodyStream implements AsyncIterable<Uint8Array> {
  over = false;
  readonly #req: IncomingMessage;
  readonly #it: AsyncIterator<Buffer>;
  readonly #pre: Buffer[];
  readonly #max: number;

  constructor(req: IncomingMessage, it: AsyncIterator<Buffer>, pre: Buffer[], max: number) {
    this.#req = req;
    this.#it = it;
    this.#pre = pre;
    this.#max = max;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    let n = 0;
    let done = false;
    try {
      for (const c of this.#pre) {
        n += c.byteLength;
        yield c;
      }
      for (;;) {
        const r = await this.#it.next();
        if (r.done) break;
        n += r.value.byteLength;
        if (n > this.#max) {
          this.over = true;
          throw new BindingError('SLUICE_VALUE_TOO_LARGE', `request body exceeds ${this.#max} bytes`);
        }
        yield r.value;
      }
      done = true;
    } finally {
      if (!done) {
        await this.#it.return?.();
        this.#req.resume();
      }
    }
  }
}

/** Writes a streamed response: its head, then its chunks as the client takes them. */
async function writeStream(res: ServerResponse, recv: StreamReceiver, requestId: string): Promise<void> {
  const head = await recv.head();
  res.writeHead(head.status, { 'x-request-id': requestId, ...head.headers });
  let gone = false;
  const onClose = () => (gone = true);
  res.once('close', onClose);
  try {
    for await (const c of recv) {
      // Backpressure: wait for the socket before taking (and acking) the next chunk.
      if (!res.write(c)) await Promise.race([once(res, 'drain'), once(res, 'close')]);
      if (gone) return;
    }
    res.end();
  } catch (e) {
    // Headers are out: all that is left to say is that the body is incomplete.
    res.destroy(e as Error);
  } finally {
    res.off('close', onClose);
  }
}

/** Options of {@link HttpTriggerServer.start}. */
export interface HttpTriggerServerOptions {
  o: ResolvedWorkerOptions;
  trigger: Readonly<Required<Omit<HttpTrigger, 'methods'>> & { methods: readonly string[] }>;
  state: KvBinding;
  log: Logger;
  registry: Registry;
}

export class HttpTriggerServer {
  readonly url: string;
  readonly #o: HttpTriggerServerOptions;
  readonly #server: Server;
  /** The handler threads; undefined for an `isolation: inline` trigger, which runs {@link #inline}. */
  readonly #pool: HttpThreadPool | undefined;
  readonly #inline: HttpRunner | undefined;
  readonly #heartbeat: NodeJS.Timeout;
  readonly #key: string;
  /** Connections handed over by the ingress: the routes it served then, and where it listens. */
  readonly #handedOff = new WeakMap<Socket, { routes: { path: string }[]; ingress: PipeTarget }>();
  #closing = false;
  /** Requests admitted (running or waiting for a thread); bounded by {@link #capacity}. */
  #inFlight = 0;
  readonly #capacity: number;

  private constructor(o: HttpTriggerServerOptions, server: Server, run: HttpThreadPool | HttpRunner, url: string) {
    this.#o = o;
    this.#server = server;
    this.#pool = run instanceof HttpThreadPool ? run : undefined;
    this.#inline = run instanceof HttpThreadPool ? undefined : run;
    this.url = url;
    this.#key = StateKeys.httpWorker(o.o.function, o.o.ordinal);
    this.#capacity = Math.max(1, o.o.threads) * o.trigger.concurrency + o.trigger.maxQueue;
    this.#heartbeat = setInterval(() => void this.#register().catch((e: unknown) => o.log.warn({ err: e }, 'http registration failed')), HTTP_HEARTBEAT_MS);
    this.#heartbeat.unref();
  }

  static async start(o: HttpTriggerServerOptions): Promise<HttpTriggerServer> {
    const w = o.o;
    const data: HttpThreadData = { module: w.module, function: w.function, backend: w.backend, bindings: [...w.bindings], logLevel: w.logLevel, secrets: { ...w.secrets } };
    const threads = Math.max(1, w.threads);
    const inline = o.trigger.isolation === 'inline';
    const pool = inline ? httpHandler(data, 'http-inline') : new HttpThreadPool({ filename: BOOTSTRAP, threads, concurrency: o.trigger.concurrency, workerData: data, log: o.log });
    const seconds = new Histogram({
      name: 'sluice_http_request_seconds',
      help: 'HTTP-triggered requests by route and status',
      labelNames: ['function', 'route', 'status'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
      registers: [o.registry],
    });
    // One labelled child per status: observe() with a labels object hashes the labels on every call.
    const byStatus = new Map<number, { observe(v: number): void }>();
    const observe = (status: number, s: number) => {
      let h = byStatus.get(status);
      if (h === undefined) byStatus.set(status, (h = seconds.labels({ route: o.trigger.path, status: String(status) })));
      h.observe(s);
    };
    let self: HttpTriggerServer | undefined;
    const server = createServer((req, res) => {
      const started = performance.now();
      // Observed once the answer is handed to the socket (#handle resolves after res.end, or after the
      // last chunk of a streamed answer): no 'finish' listener per request.
      self!.#handle(req, res).then(
        () => observe(res.statusCode, (performance.now() - started) / 1000),
        (e: unknown) => {
          o.log.error({ err: e }, 'http request failed');
          if (!res.headersSent) send(res, 500, { error: { code: 'SLUICE_INTERNAL', message: 'internal error' } });
          else res.destroy();
          observe(500, (performance.now() - started) / 1000);
        },
      );
    });
    server.keepAliveTimeout = WORKER_KEEP_ALIVE_MS;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, o.trigger.host, () => resolve());
    });
    const addr = server.address();
    const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
    const host = o.trigger.host.includes(':') ? `[${o.trigger.host}]` : o.trigger.host;
    self = new HttpTriggerServer(o, server, pool, `http://${host}:${port}`);
    // Register only once the handler module loads (a broken module fails the worker's start, visibly).
    // A warm-up that fails (the thread died starting, the load ran past 60 s) is a failed load too.
    const warm = await (pool instanceof HttpThreadPool ? (t: HttpTask) => pool.run(t) : pool.task)({ req: { method: 'GET', path: o.trigger.path, query: {}, headers: {}, body: new Uint8Array(0), streamed: false, requestId: 'warm-up' }, deadlineMs: Date.now() + 60_000, warm: true }).catch(
      (e: unknown): HttpTaskResult => ({ ok: false, error: serializeError((e as Error).name === 'TimeoutError' ? new BindingError('SLUICE_HANDLER_TIMEOUT', 'the module and its bindings did not load within 60 s') : e) }),
    );
    if (warm instanceof MessagePort || !warm.ok) {
      if (warm instanceof MessagePort) warm.close();
      await self.close();
      throw new BindingError('SLUICE_HANDLER_FAILED', `function ${w.function} (${w.module}) failed to load: ${warm instanceof MessagePort ? 'the warm-up streamed' : warm.error.message}`);
    }
    await self.#register();
    return self;
  }

  async #register(): Promise<void> {
    const reg: HttpRegistration = { url: this.url, at: Date.now(), pid: process.pid };
    await this.#o.state.putItem(this.#key, { ...reg });
  }

  /**
   * Takes a connection the platform's ingress handed to this process (http-handoff.ts): its first bytes
   * are put back in front of the socket and this server answers every request on it. Closed when the
   * connection is for another function or this server is closing.
   */
  adopt(socket: Socket, m: HttpHandOff): void {
    if (this.#closing || m.function !== this.#o.o.function) {
      socket.destroy();
      return;
    }
    this.#handedOff.set(socket, { routes: m.routes.map((path) => ({ path })), ingress: pipeTargetOf(m.ingress) });
    this.#server.emit('connection', socket);
    socket.unshift(Buffer.from(m.head, 'base64'));
    socket.resume();
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const t = this.#o.trigger;
    const url = splitTarget(req.url ?? '/');
    const handed = this.#handedOff.get(req.socket);
    if (handed !== undefined && longestRoute(url.path, handed.routes)?.path !== t.path) {
      // A request for another route on a connection handed to us for ours: the ingress answers it, on a
      // fresh connection (whose first request it routes), so the answer is the one it would have given.
      return pipeRequest(req, res, handed.ingress, false, (e) => send(res, 502, { error: { code: 'SLUICE_BACKEND_UNAVAILABLE', message: `the ingress did not answer: ${e.message}` } }));
    }
    const raw = req.headers;
    const given = raw['x-request-id'];
    const requestId = given !== undefined && typeof given === 'string' && /^[\w.-]{1,128}$/.test(given) ? given : randomUUID();
    // node:http already upper-cases the method and joins repeated headers; only set-cookie stays an array.
    const method = req.method ?? 'GET';
    if (t.methods.length > 0 && !t.methods.includes(method)) return send(res, 405, { error: { code: 'SLUICE_INVALID_ARGUMENT', message: `${method} is not allowed on ${t.path}` }, requestId }, requestId, { allow: t.methods.join(', ') });
    let headers = raw as Record<string, string>;
    if (raw['set-cookie'] !== undefined) {
      headers = {};
      for (const k in raw) {
        const v = raw[k];
        if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
      }
    }
    // Admission before reading the body: an overloaded worker does not take in 50 MiB to answer 429.
    if (this.#inFlight >= this.#capacity) return send(res, 429, { error: { code: 'SLUICE_BACKEND_UNAVAILABLE', message: 'over capacity: every handler place and queue slot is taken' }, requestId }, requestId, { 'retry-after': '1' });
    this.#inFlight++;
    try {
      await this.#run(req, res, requestId, method, url, headers);
    } catch (e) {
      // The trigger's own failure (a header value node:http refuses, a shutdown): 500 with the request id.
      this.#o.log.error({ err: e, requestId }, 'http request failed');
      if (!res.headersSent) send(res, 500, { error: { code: 'SLUICE_INTERNAL', message: 'internal error' }, requestId }, requestId);
      else res.destroy();
    } finally {
      this.#inFlight--;
    }
  }

  async #run(req: IncomingMessage, res: ServerResponse, requestId: string, method: string, url: { path: string; query: string }, headers: Record<string, string>): Promise<void> {
    const t = this.#o.trigger;
    const tooLarge = () => send(res, 413, { error: { code: 'SLUICE_VALUE_TOO_LARGE', message: `request body exceeds ${t.maxBodyBytes} bytes` }, requestId }, requestId);
    // No body (most GETs): no async read to await.
    const read = hasBody(req) ? await readBody(req, t.maxBodyBytes, t.streamBodyBytes) : NO_BODY;
    if ('over' in read) return tooLarge();
    const body = 'body' in read ? read.body : EMPTY;
    const stream = 'stream' in read ? read.stream : undefined;
    const query = url.query === '' ? {} : Object.fromEntries(new URLSearchParams(url.query));
    const task: HttpTask = { req: { method, path: url.path, query, headers, body, streamed: stream !== undefined, requestId }, deadlineMs: Date.now() + this.#o.o.timeoutMs };
    const transferList: (ArrayBuffer | MessagePort)[] = body.byteLength > 0 ? [body.buffer as ArrayBuffer] : [];
    let sending: Promise<void> | undefined;
    if (stream) {
      const { port1, port2 } = new MessageChannel();
      task.port = port2;
      transferList.push(port2);
      sending = sendStream(port1, stream);
    }
    let r: HttpTaskResult;
    try {
      // Both reject with a TimeoutError at the deadline (the pool replaces the thread).
      r = this.#pool ? await this.#pool.run(task, transferList) : await this.#inline!.inline(task.req, task.deadlineMs, task.port);
    } catch (e) {
      if ((e as Error).name === 'TimeoutError') {
        this.#o.log.warn({ requestId, timeoutMs: this.#o.o.timeoutMs }, this.#pool ? 'http handler timed out; its thread is replaced' : 'http handler (inline) timed out; its late answer is dropped');
        return send(res, 504, { error: { code: 'SLUICE_HANDLER_TIMEOUT', message: `handler ran past ${this.#o.o.timeoutMs} ms` }, requestId }, requestId);
      }
      throw e;
    }
    if (r instanceof MessagePort) {
      // A streamed response; it counts against capacity until its last chunk.
      const recv = new StreamReceiver(r);
      try {
        await writeStream(res, recv, requestId);
      } catch (e) {
        const code = (e as { code?: string }).code;
        if (code === 'SLUICE_HANDLER_TIMEOUT') return send(res, 504, { error: { code, message: `handler ran past ${this.#o.o.timeoutMs} ms` }, requestId }, requestId);
        this.#o.log.warn({ requestId, error: { code, message: (e as Error).message } }, 'http handler failed before its response stream started');
        return send(res, 500, { error: { code: 'SLUICE_HANDLER_FAILED', message: `the handler failed (request ${requestId})` }, requestId }, requestId);
      }
      return;
    }
    // Set as the stream failed, before the handler saw the failure; the sender itself may still be
    // draining the rest of a body the handler did not read (it never rejects).
    void sending;
    if (stream?.over) return tooLarge();
    if (!r.ok) {
      this.#o.log.warn({ requestId, error: { code: r.error.code, message: r.error.message } }, 'http handler failed');
      // The handler's own error: 500 with the request id; its message stays in the logs, not the response.
      return send(res, 500, { error: { code: 'SLUICE_HANDLER_FAILED', message: `the handler failed (request ${requestId})` }, requestId }, requestId);
    }
    const out = r.body;
    const length = typeof out === 'string' ? Buffer.byteLength(out) : out.byteLength;
    // The handler's headers are the runner's own copy: completed in place, written with one writeHead
    // (no setHeader before it, so node:http builds the head straight from this object).
    // Names are lower case (http-thread.ts): the handler's own x-request-id wins, as it always did.
    const h = r.headers;
    h['x-request-id'] ??= requestId;
    // A HEAD answer keeps the length the handler gives (that of the body a GET would get).
    if (!(method === 'HEAD' && length === 0 && h['content-length'] !== undefined)) h['content-length'] = String(length);
    res.writeHead(r.status, h);
    // A string goes out with the head as one write; bytes through endWithBody (one write when small).
    if (typeof out === 'string') res.end(out);
    else endWithBody(res, out);
  }

  async close(): Promise<void> {
    this.#closing = true;
    clearInterval(this.#heartbeat);
    await this.#o.state.deleteItem(this.#key).catch(() => undefined);
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections?.();
    await this.#pool?.destroy();
  }
}
