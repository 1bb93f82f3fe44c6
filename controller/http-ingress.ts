/**
 * The platform's HTTP ingress (`sluice dev --http`, default 127.0.0.1:8080): routes a request by its path
 * to a function with an http trigger and proxies it to one of that function's workers, round robin over
 * the workers registered in the state table (runtime/triggers/http.ts). The longest matching route wins
 * (`/a/b` before `/a`); a route matches its path and everything below it.
 *
 * Answers of its own: 404 when no route matches, 503 with Retry-After while the function has no live
 * worker (none registered within the last 3 heartbeats), 502 when the chosen worker cannot be reached
 * (the next request tries the next worker). Bodies stream through in both directions.
 */
import { Agent, createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Histogram, type Registry } from 'prom-client';
import type { KvBinding } from '../bindings/types.ts';
import { StateKeys } from '../runtime/state.ts';
import { HTTP_HEARTBEAT_MS, splitTarget, type HttpRegistration } from '../runtime/triggers/http.ts';

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

/** True when `path` is `route` or below it. */
function under(path: string, route: string): boolean {
  if (route === '/') return true;
  return path === route || path.startsWith(route.endsWith('/') ? route : `${route}/`);
}

export async function startHttpIngress(o: HttpIngressOptions): Promise<HttpIngress> {
  // Keep-alive to the workers: a new TCP connection per proxied request would cost more than the hop.
  const agent = new Agent({ keepAlive: true, maxFreeSockets: o.maxIdleSocketsPerWorker ?? 64 });
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
  const cache = new Map<string, { at: number; urls: { hostname: string; port: number; host: string }[] }>();
  const rr = new Map<string, number>();
  async function workers(fn: string, replicas: number): Promise<{ hostname: string; port: number; host: string }[]> {
    const c = cache.get(fn);
    if (c && Date.now() - c.at < HTTP_HEARTBEAT_MS / 2) return c.urls;
    const regs = await Promise.all(Array.from({ length: replicas }, (_, i) => o.state.getItem(StateKeys.httpWorker(fn, i))));
    const now = Date.now();
    const urls = regs.flatMap((r) => {
      const reg = r?.item as unknown as HttpRegistration | undefined;
      if (!reg || typeof reg.url !== 'string' || now - reg.at >= 3 * HTTP_HEARTBEAT_MS) return [];
      // Parsed once per refresh, not per request.
      const u = new URL(reg.url);
      return [{ hostname: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port), host: u.host }];
    });
    cache.set(fn, { at: now, urls });
    return urls;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { path } = splitTarget(req.url ?? '/');
    let route: ReturnType<RouteSource['httpRoutes']>[number] | undefined;
    for (const r of o.routes.httpRoutes()) if (under(path, r.path) && (route === undefined || r.path.length > route.path.length)) route = r;
    if (seconds) {
      const started = process.hrtime.bigint();
      const fn = route?.function ?? '';
      const rp = route?.path ?? '';
      res.once('finish', () => observe(fn, rp, res.statusCode, Number(process.hrtime.bigint() - started) / 1e9));
    }
    if (route === undefined) return send(res, 404, 'SLUICE_NOT_FOUND', `no function serves ${path}`);
    const urls = await workers(route.function, route.replicas);
    if (urls.length === 0) return send(res, 503, 'SLUICE_BACKEND_UNAVAILABLE', `function ${route.function} has no running worker`, { 'retry-after': '1' });
    const n = (rr.get(route.function) ?? 0) % urls.length;
    rr.set(route.function, n + 1);
    const target = urls[n]!;
    await new Promise<void>((resolve) => {
      const up = request({ agent, hostname: target.hostname, port: target.port, path: req.url ?? '/', method: req.method ?? 'GET', headers: { ...req.headers, host: target.host } }, (w) => {
        res.writeHead(w.statusCode ?? 502, w.headers);
        w.pipe(res);
        w.on('end', resolve);
        w.on('error', () => (res.destroy(), resolve()));
      });
      up.on('error', (e) => {
        cache.delete(route.function);
        if (!res.headersSent) send(res, 502, 'SLUICE_BACKEND_UNAVAILABLE', `worker of ${route.function} did not answer: ${e.message}`);
        else res.destroy();
        resolve();
      });
      req.pipe(up);
    });
  }

  const server: Server = createServer((req, res) => {
    void handle(req, res).catch((e: unknown) => {
      if (!res.headersSent) send(res, 500, 'SLUICE_INTERNAL', (e as Error).message);
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 8080, o.host ?? '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  const host = (o.host ?? '127.0.0.1').includes(':') ? `[${o.host}]` : (o.host ?? '127.0.0.1');
  return {
    url: `http://${host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections?.();
        agent.destroy();
      }),
  };
}
