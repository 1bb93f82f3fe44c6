/**
 * The platform's HTTP ingress (`sluice dev --http`, default 127.0.0.1:8080): routes a request by its path
 * to a function with an http trigger and proxies it to one of that function's workers, round robin over
 * the workers registered in the state table (runtime/triggers/http.ts). The longest matching route wins
 * (`/a/b` before `/a`); a route matches its path and everything below it.
 *
 * Answers of its own: 404 when no route matches, 503 with Retry-After while the function has no live
 * worker (none registered within the last 3 heartbeats), 502 when the chosen worker cannot be reached
 * (the next request tries the next worker). Bodies stream through in both directions.
 *
 * With `handOff` (the local driver's workers, on this host) a connection is not proxied at all: the
 * ingress reads its first request line, routes it, and passes the socket to a worker of that function
 * (runtime/triggers/http-handoff.ts), which then answers every request on it. A connection whose first
 * request it cannot hand off (no route, no live worker, a worker that is not a child of this process)
 * is served by the proxy as above.
 */
import { createServer as createNetServer, type Socket } from 'node:net';
import { Agent, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Counter, Histogram, type Registry } from 'prom-client';
import type { KvBinding } from '../bindings/types.ts';
import { StateKeys } from '../runtime/state.ts';
import { longestRoute, pipeRequest, pipeTargetOf, requestTarget, type HttpHandOff, type PipeTarget } from '../runtime/triggers/http-handoff.ts';
import { HTTP_HEARTBEAT_MS, INGRESS_IDLE_SOCKET_MS, splitTarget, type HttpRegistration } from '../runtime/triggers/http.ts';

/** The routes the ingress serves: what {@link Controller.httpRoutes} returns. */
export interface RouteSource {
  httpRoutes(): { function: string; path: string; methods: string[]; replicas: number }[];
}

/** Options of {@link startHttpIngress}. */
export interface HttpIngressOptions {
  routes: RouteSource;
  /** The platform's state table (worker registrations). */
  state: KvBinding;
  /** @default '127.0.0.1' */
  host?: string;
  /** 0 picks a free port. @default 8080 */
  port?: number;
  /**
   * Where the ingress's per-route series go (`sluice_ingress_request_seconds{function,route,status}`:
   * every answer, its own 404/502/503 included; route and function `""` when no route matched).
   * `sluice dev` passes the platform's registry, so they are on its /metrics. @default none (no metrics)
   */
  registry?: Registry;
  /** Idle keep-alive connections kept per worker. @default 64 */
  maxIdleSocketsPerWorker?: number;
  /**
   * Passes a connection to the worker process `pid` (with `message`), true when it was sent: the local
   * driver's {@link LocalDriver.sendHandle}. Without it every request is proxied. @default none (proxy only)
   */
  handOff?: (pid: number, message: HttpHandOff, socket: Socket) => boolean;
  /** How long a new connection may take to send its first request line before it is closed. @default 60000 */
  requestLineTimeoutMs?: number;
}

export interface HttpIngress {
  url: string;
  port: number;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, code: string, message: string, headers: Record<string, string> = {}): void {
  const text = JSON.stringify({ error: { code, message } });
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}

/** A live worker: where to proxy to, and its process (for a hand-off). */
type WorkerTarget = PipeTarget & { pid: number | undefined };

/** The internals of a TCP handle this file touches: stopping its reads before the socket is sent on. */
interface ReadingHandle {
  reading?: boolean;
  readStop?(): number;
}

/**
 * Stops reading from `socket` at the handle: nothing more is read into this process (what the peer sends
 * next stays in the kernel for whoever takes the socket). `reading = false` keeps net's own bookkeeping
 * right, so a later resume() starts reading again.
 */
function stopReading(socket: Socket): void {
  const h = (socket as unknown as { _handle?: ReadingHandle })._handle;
  if (h?.readStop) {
    h.reading = false;
    h.readStop();
  }
}

export async function startHttpIngress(o: HttpIngressOptions): Promise<HttpIngress> {
  // Keep-alive to the workers: a new TCP connection per proxied request would cost more than the hop.
  // Idle connections are dropped well before the worker would close them (Node's agent keeps them until
  // the server does, which races a reuse).
  const agent = new Agent({ keepAlive: true, maxFreeSockets: o.maxIdleSocketsPerWorker ?? 64, timeout: INGRESS_IDLE_SOCKET_MS });
  // An earlier attempt on the same registry (a taken port retried on a free one) registered it already.
  const seconds = o.registry
    ? ((o.registry.getSingleMetric('sluice_ingress_request_seconds') as Histogram<'function' | 'route' | 'status'> | undefined) ?? new Histogram({
        name: 'sluice_ingress_request_seconds',
        help: 'Requests through the HTTP ingress by function, route and status (route "" when none matched)',
        labelNames: ['function', 'route', 'status'],
        buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
        registers: [o.registry],
      }))
    : undefined;
  // One labelled child per (function, route, status): observe() with a labels object hashes them per call.
  const children = new Map<string, { observe(v: number): void }>();
  const observe = (fn: string, route: string, status: number, s: number) => {
    const k = `${fn}\0${route}\0${status}`;
    let h = children.get(k);
    if (h === undefined) children.set(k, (h = seconds!.labels({ function: fn, route, status: String(status) })));
    h.observe(s);
  };
  // Workers per function, refreshed at most every heartbeat: the state table is not read per request.
  const cache = new Map<string, { at: number; urls: WorkerTarget[] }>();
  const rr = new Map<string, number>();
  async function workers(fn: string, replicas: number): Promise<WorkerTarget[]> {
    const c = cache.get(fn);
    if (c && Date.now() - c.at < HTTP_HEARTBEAT_MS / 2) return c.urls;
    const regs = await Promise.all(Array.from({ length: replicas }, (_, i) => o.state.getItem(StateKeys.httpWorker(fn, i))));
    const now = Date.now();
    const urls = regs.flatMap((r) => {
      const reg = r?.item as unknown as HttpRegistration | undefined;
      if (!reg || typeof reg.url !== 'string' || now - reg.at >= 3 * HTTP_HEARTBEAT_MS) return [];
      // Parsed once per refresh, not per request.
      return [{ ...pipeTargetOf(reg.url), pid: typeof reg.pid === 'number' ? reg.pid : undefined }];
    });
    cache.set(fn, { at: now, urls });
    return urls;
  }

  /** The next worker of `fn`, round robin; undefined when it has none live. */
  async function pick(fn: string, replicas: number): Promise<WorkerTarget | undefined> {
    const urls = await workers(fn, replicas);
    if (urls.length === 0) return undefined;
    const n = (rr.get(fn) ?? 0) % urls.length;
    rr.set(fn, n + 1);
    return urls[n]!;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { path } = splitTarget(req.url ?? '/');
    const route = longestRoute(path, o.routes.httpRoutes());
    if (seconds) {
      const started = process.hrtime.bigint();
      const fn = route?.function ?? '';
      const rp = route?.path ?? '';
      res.once('finish', () => observe(fn, rp, res.statusCode, Number(process.hrtime.bigint() - started) / 1e9));
    }
    if (route === undefined) return send(res, 404, 'SLUICE_NOT_FOUND', `no function serves ${path}`);
    const target = await pick(route.function, route.replicas);
    if (target === undefined) return send(res, 503, 'SLUICE_BACKEND_UNAVAILABLE', `function ${route.function} has no running worker`, { 'retry-after': '1' });
    await pipeRequest(req, res, target, agent, (e) => {
      cache.delete(route.function);
      send(res, 502, 'SLUICE_BACKEND_UNAVAILABLE', `worker of ${route.function} did not answer: ${e.message}`);
    });
  }

  const server: Server = createServer((req, res) => {
    void handle(req, res).catch((e: unknown) => {
      if (!res.headersSent) send(res, 500, 'SLUICE_INTERNAL', (e as Error).message);
      else res.destroy();
    });
  });
  const handOffs = o.registry && o.handOff
    ? ((o.registry.getSingleMetric('sluice_ingress_handoffs_total') as Counter<'function'> | undefined) ??
      new Counter({ name: 'sluice_ingress_handoffs_total', help: 'Connections the HTTP ingress handed to a worker process (their requests are counted by the worker: sluice_http_request_seconds)', labelNames: ['function'], registers: [o.registry] }))
    : undefined;
  const host = (o.host ?? '127.0.0.1').includes(':') ? `[${o.host}]` : (o.host ?? '127.0.0.1');
  let url = '';

  /** Serves `socket` here (proxy, or the ingress's own answers), `head` being what was read of it. */
  function serveHere(socket: Socket, head: Buffer): void {
    server.emit('connection', socket);
    socket.unshift(head);
    socket.resume();
  }

  /** Routes a connection by its first request line: to a worker's process when it can, else here. */
  async function route(socket: Socket, head: Buffer, target: string): Promise<void> {
    let routed: ReturnType<RouteSource['httpRoutes']>[number] | undefined;
    let routes: ReturnType<RouteSource['httpRoutes']> = [];
    try {
      routes = o.routes.httpRoutes();
      routed = longestRoute(splitTarget(target).path, routes);
    } catch {
      // Not a target this ingress can route (the HTTP server answers it).
    }
    const w = routed ? await pick(routed.function, routed.replicas).catch(() => undefined) : undefined;
    if (routed && w?.pid !== undefined && !socket.destroyed) {
      const message: HttpHandOff = { t: 'sluice:http-conn', function: routed.function, head: head.toString('base64'), routes: routes.map((r) => r.path), ingress: url };
      if (o.handOff!(w.pid, message, socket)) {
        handOffs?.inc({ function: routed.function });
        return;
      }
    }
    if (!socket.destroyed) serveHere(socket, head);
  }

  function onConnection(socket: Socket): void {
    let head: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(), o.requestLineTimeoutMs ?? 60_000);
    const onError = () => (clearTimeout(timer), socket.destroy());
    const onData = (c: Buffer) => {
      head = head.byteLength === 0 ? c : Buffer.concat([head, c]);
      const target = requestTarget(head);
      if (target === undefined) return;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('end', onError);
      socket.pause();
      stopReading(socket);
      if (target === null) serveHere(socket, head);
      else void route(socket, head, target).catch(() => (socket.destroyed ? undefined : serveHere(socket, head)));
    };
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('end', onError);
    socket.resume();
  }

  // noDelay as node:http's own servers set it (TCP_NODELAY stays on the socket when it is handed on).
  const front = o.handOff ? createNetServer({ pauseOnConnect: true, noDelay: true }, onConnection) : server;
  await new Promise<void>((resolve, reject) => {
    front.once('error', reject);
    front.listen(o.port ?? 8080, o.host ?? '127.0.0.1', () => resolve());
  });
  const addr = front.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  url = `http://${host}:${port}`;
  return {
    url,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        if (front !== server) front.close();
        server.close(() => resolve());
        server.closeAllConnections?.();
        agent.destroy();
      }),
  };
}
