/**
 * Connection hand-off between the platform's HTTP ingress and a function's worker process on the same
 * host (the local driver's workers): the ingress reads a new connection's first bytes, routes by the
 * request line's path, and passes the socket itself — with the bytes it read — to a worker of that
 * function over the worker's IPC channel. From then on the worker's own HTTP server parses and answers
 * every request on that connection: one parse and one serialisation per request instead of two (the
 * proxy hop costed half the throughput on 2 cores, docs/BENCHMARKS.md).
 *
 * A keep-alive connection may later carry a request for another function's route: the worker sees the
 * route table it was handed with the connection and forwards such a request to the ingress on a fresh,
 * non-keep-alive connection (whose first request the ingress routes correctly), so the answer is the one
 * the ingress would have given.
 */
import { request, type Agent, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';

/** The IPC message a handed-off socket travels with. */
export interface HttpHandOff {
  t: 'sluice:http-conn';
  /** The function whose worker takes the connection. */
  function: string;
  /** The bytes the ingress read from the connection before routing it (base64). */
  head: string;
  /** Every route path the ingress serves when it handed the connection off (longest match decides). */
  routes: string[];
  /** The ingress's own URL, where requests for other routes are forwarded. */
  ingress: string;
}

export function isHandOff(m: unknown): m is HttpHandOff {
  return typeof m === 'object' && m !== null && (m as HttpHandOff).t === 'sluice:http-conn' && typeof (m as HttpHandOff).head === 'string';
}

/** True when `path` is `route` or below it. */
export function under(path: string, route: string): boolean {
  if (route === '/') return true;
  return path === route || path.startsWith(route.endsWith('/') ? route : `${route}/`);
}

/** The longest of `routes` that `path` is under; undefined when none is. */
export function longestRoute<R extends { path: string }>(path: string, routes: readonly R[]): R | undefined {
  let best: R | undefined;
  for (const r of routes) if (under(path, r.path) && (best === undefined || r.path.length > best.path.length)) best = r;
  return best;
}

/** Most bytes read while looking for the end of the first request line before giving up on routing. */
export const REQUEST_LINE_MAX_BYTES = 16 * 1024;

/**
 * The target of the first request line in `head` (`GET /a?b HTTP/1.1` → `/a?b`); undefined while the
 * line is incomplete, null when it cannot be a request line (the HTTP server then answers 400).
 */
export function requestTarget(head: Buffer): string | undefined | null {
  const end = head.indexOf('\r\n');
  if (end < 0) return head.byteLength > REQUEST_LINE_MAX_BYTES ? null : undefined;
  const line = head.toString('latin1', 0, end);
  const a = line.indexOf(' ');
  const b = line.lastIndexOf(' ');
  if (a <= 0 || b <= a) return null;
  return line.slice(a + 1, b);
}

/** Headers that describe one connection (RFC 9110 §7.6.1): each hop sets its own. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer']);

/** `headers` without the hop-by-hop ones (and without those the Connection header names). */
function endToEnd(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const named = typeof headers.connection === 'string' ? headers.connection.toLowerCase().split(',').map((h) => h.trim()) : [];
  const out: IncomingHttpHeaders = {};
  for (const k in headers) if (!HOP_BY_HOP.has(k) && !named.includes(k)) out[k] = headers[k];
  return out;
}

/** Where {@link pipeRequest} sends a request. */
export interface PipeTarget {
  hostname: string;
  port: number;
  /** The Host header to send. */
  host: string;
}

/** The target of a URL such as a worker's registration or the ingress's own (IPv6 brackets dropped). */
export function pipeTargetOf(url: string): PipeTarget {
  const u = new URL(url);
  return { hostname: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port), host: u.host };
}

/**
 * Sends `req` to `target` and streams the answer back into `res`, bodies streaming both ways; resolves
 * when the answer has been written (or the exchange failed). `onError` answers a request whose target
 * did not answer (the response not yet started); a failure after that cuts the response.
 */
export function pipeRequest(req: IncomingMessage, res: ServerResponse, target: PipeTarget, agent: Agent | false, onError: (e: Error) => void): Promise<void> {
  return new Promise<void>((resolve) => {
    const up = request({ agent, hostname: target.hostname, port: target.port, path: req.url ?? '/', method: req.method ?? 'GET', headers: { ...endToEnd(req.headers), host: target.host } }, (w) => {
      res.writeHead(w.statusCode ?? 502, endToEnd(w.headers));
      w.pipe(res);
      w.on('end', resolve);
      w.on('error', () => (res.destroy(), resolve()));
    });
    up.on('error', (e) => {
      if (!res.headersSent) onError(e);
      else res.destroy();
      resolve();
    });
    req.pipe(up);
  });
}
