/**
 * The web console: one `node:http` server with the page (a preact + htm + uPlot bundle built by
 * `build.ts` into `assets/`, committed, served from the package: nothing is fetched at run time) and a
 * small JSON API under `/api/`. Every `/api/` route but `/api/login` answers 401 with no data unless
 * the request carries a live session cookie (from logging in with a control token) or an
 * `authorization: Bearer <control token>` header.
 *
 * Writes (`POST`) must be `content-type: application/json` and, when the browser sends an Origin,
 * come from the console's own origin: with the SameSite=Strict cookie this closes cross-site requests.
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mappingOf } from '../../bindings/error-table.ts';
import { SluiceError } from '../../bindings/errors.ts';
import type { KvBinding } from '../../bindings/types.ts';
import { openStateTable } from '../../runtime/index.ts';
import { TokenSet } from '../grpc/auth.ts';
import { resolveConsoleOptions, type ConsoleOptions } from './console-options.ts';
import { imageType, listBuckets, readDeadLetters, redrive, runQuery, toJsonValue } from './data.ts';
import { LogTails } from './log-tail.ts';
import { Sampler } from './sampler.ts';
import { authenticated, cookieOf, COOKIE, Sessions } from './session.ts';

/** A running console. */
export interface RunningConsole {
  /** `http://host:port/` of the console (the port actually bound). */
  readonly url: string;
  readonly port: number;
  /** Takes one status sample of every function now (tests step the charts with it). */
  sample(): Promise<void>;
  /** Stops the server, the sampler and the log follows. Idempotent. */
  close(): Promise<void>;
}

const assetsDir = new URL('./assets/', import.meta.url);

function asset(name: string): Buffer {
  try {
    return readFileSync(new URL(name, assetsDir));
  } catch (e) {
    throw new SluiceError('SLUICE_INTERNAL', `console asset ${name} is missing from the package; run \`npm run build:console\``, { cause: e });
  }
}

const INDEX = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>sluice console</title><link rel="stylesheet" href="/assets/app.css"></head>
<body><div id="app"></div><script type="module" src="/assets/app.js"></script></body></html>
`;

const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers });
  res.end(text);
}

async function readJson(req: IncomingMessage, maxBytes = 64 * 1024): Promise<Record<string, unknown>> {
  if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) throw new HttpError(415, 'SLUICE_INVALID_ARGUMENT', 'send the body as content-type: application/json');
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > maxBytes) throw new HttpError(413, 'SLUICE_VALUE_TOO_LARGE', `request body is larger than ${maxBytes} bytes`);
    chunks.push(c);
  }
  try {
    const v = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
    return v as Record<string, unknown>;
  } catch (e) {
    throw new HttpError(400, 'SLUICE_INVALID_ARGUMENT', `request body must be a JSON object: ${(e as Error).message}`);
  }
}

function intParam(u: URL, name: string, dflt: number, min: number, max: number): number {
  const raw = u.searchParams.get(name);
  if (raw === null || raw === '') return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new HttpError(400, 'SLUICE_INVALID_ARGUMENT', `query parameter '${name}' must be an integer in ${min}..${max}`);
  return n;
}

function required(u: URL, name: string): string {
  const v = u.searchParams.get(name);
  if (v === null || v === '') throw new HttpError(400, 'SLUICE_INVALID_ARGUMENT', `query parameter '${name}' is required`);
  return v;
}

/** Starts the console; resolves once it listens. */
export async function startConsole(options: ConsoleOptions): Promise<RunningConsole> {
  const o = resolveConsoleOptions(options);
  const tokens = new TokenSet(o.tokens, 'console.tokens');
  const sessions = new Sessions(o.sessionTtlMs, o.maxSessions);
  const sampler = new Sampler(o.plane, o.sampleIntervalMs, o.samplesPerFunction);
  const tails = new LogTails(o.plane, o.logLines, o.logIdleMs);
  const js = asset('app.js');
  const css = asset('app.css');
  let state: KvBinding | undefined;
  const stateTable = async () => (state ??= await openStateTable(o.backend));

  async function api(req: IncomingMessage, res: ServerResponse, u: URL): Promise<void> {
    const path = u.pathname;
    const method = req.method ?? 'GET';
    if (method === 'POST') {
      const origin = req.headers.origin;
      if (origin !== undefined && origin !== `http://${req.headers.host}` && origin !== `https://${req.headers.host}`) throw new HttpError(403, 'SLUICE_UNAUTHENTICATED', 'cross-origin writes are refused');
    }
    if (path === '/api/login' && method === 'POST') {
      const body = await readJson(req);
      if (typeof body.token !== 'string' || !tokens.accepts(body.token)) {
        // A small fixed delay makes guessing slow without tracking anyone.
        await new Promise((r) => setTimeout(r, 250));
        return send(res, 401, { error: { code: 'SLUICE_UNAUTHENTICATED', message: 'the control token is not accepted' } });
      }
      return send(res, 200, { ok: true }, { 'set-cookie': sessions.cookie(sessions.create(), o.secureCookie) });
    }
    if (path === '/api/logout' && method === 'POST') {
      sessions.delete(cookieOf(req, COOKIE));
      return send(res, 200, { ok: true }, { 'set-cookie': sessions.cookie(undefined, o.secureCookie) });
    }
    if (!authenticated(req, sessions, tokens)) return send(res, 401, { error: { code: 'SLUICE_UNAUTHENTICATED', message: 'log in with the control token first' } });

    let m: RegExpExecArray | null;
    if (path === '/api/session' && method === 'GET') return send(res, 200, { ok: true });
    if (path === '/api/functions' && method === 'GET') {
      const fns = sampler.latest().map((s) => ({ ...s, lastError: s.errors[0] ?? null }));
      return send(res, 200, { functions: fns, sampledEveryMs: o.sampleIntervalMs, ...(sampler.lastError ? { problem: sampler.lastError } : {}) });
    }
    if ((m = /^\/api\/functions\/([^/]+)$/.exec(path)) && method === 'GET') {
      const name = decodeURIComponent(m[1]!);
      // The sampler's snapshot (at most one interval old): tabs never make the controller measure.
      return send(res, 200, { status: sampler.latestOf(name) ?? (await o.plane.status(name)), series: sampler.series(name) });
    }
    if ((m = /^\/api\/functions\/([^/]+)\/logs$/.exec(path)) && method === 'GET') {
      return send(res, 200, tails.read(decodeURIComponent(m[1]!), intParam(u, 'after', 0, 0, Number.MAX_SAFE_INTEGER)));
    }
    if ((m = /^\/api\/functions\/([^/]+)\/dead-letters$/.exec(path)) && method === 'GET') {
      return send(res, 200, await readDeadLetters(o.backend, await stateTable(), decodeURIComponent(m[1]!), intParam(u, 'limit', 100, 1, 1000)));
    }
    if ((m = /^\/api\/functions\/([^/]+)\/dead-letters\/redrive$/.exec(path)) && method === 'POST') {
      const body = await readJson(req);
      if (!Number.isInteger(body.shard) || !Number.isInteger(body.seq)) throw new HttpError(400, 'SLUICE_INVALID_ARGUMENT', 'redrive needs integer shard and seq');
      return send(res, 200, { outcome: await redrive(o.backend, await stateTable(), decodeURIComponent(m[1]!), body.shard as number, body.seq as number) });
    }
    if (path === '/api/buckets' && method === 'GET') return send(res, 200, { buckets: await listBuckets(o.backend, o.buckets) });
    if ((m = /^\/api\/buckets\/([^/]+)\/objects$/.exec(path)) && method === 'GET') {
      const objects = await o.backend.objects(decodeURIComponent(m[1]!));
      const token = u.searchParams.get('token');
      const page = await objects.list({ prefix: u.searchParams.get('prefix') ?? '', delimiter: '/', limit: intParam(u, 'limit', 200, 1, 1000), ...(token ? { continuationToken: token } : {}) });
      return send(res, 200, { objects: page.objects.map((x) => ({ ...x, mtime: x.mtime.toISOString() })), prefixes: page.commonPrefixes, ...(page.nextToken ? { nextToken: page.nextToken } : {}) });
    }
    if ((m = /^\/api\/buckets\/([^/]+)\/object$/.exec(path)) && method === 'GET') {
      const objects = await o.backend.objects(decodeURIComponent(m[1]!));
      const key = required(u, 'key');
      const head = await objects.head(key);
      if (!head) throw new HttpError(404, 'SLUICE_NOT_FOUND', `object '${key}' does not exist`);
      const attrs = Object.fromEntries(Object.entries(head.attrs).filter(([k]) => !k.startsWith('$sluice.')).map(([k, v]) => [k, toJsonValue(v)]));
      return send(res, 200, { ...head, mtime: head.mtime.toISOString(), attrs });
    }
    if ((m = /^\/api\/buckets\/([^/]+)\/attr$/.exec(path)) && method === 'GET') {
      const objects = await o.backend.objects(decodeURIComponent(m[1]!));
      const key = required(u, 'key');
      const name = required(u, 'name');
      const v = (await objects.getAttrs(key)).attrs[name];
      if (!(v instanceof Uint8Array) || name.startsWith('$sluice.')) throw new HttpError(404, 'SLUICE_NOT_FOUND', `object '${key}' has no binary attribute '${name}'`);
      // Only recognised images are served as images; anything else downloads as opaque bytes.
      const type = imageType(v);
      res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': type ?? 'application/octet-stream', 'cache-control': 'private, no-store', ...(type ? {} : { 'content-disposition': 'attachment' }) });
      res.end(Buffer.from(v.buffer, v.byteOffset, v.byteLength));
      return;
    }
    if (path === '/api/query' && method === 'POST') {
      const body = await readJson(req);
      return send(res, 200, await runQuery(o.backend, body.sql as string, intParam(u, 'limit', 200, 1, 1000)));
    }
    throw new HttpError(404, 'SLUICE_NOT_FOUND', `no console API route ${method} ${path}`);
  }

  const server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://console');
    if (u.pathname.startsWith('/api/')) {
      api(req, res, u).catch((e: unknown) => {
        if (res.headersSent) return void res.destroy();
        if (e instanceof HttpError) return send(res, e.status, { error: { code: e.code, message: e.message } });
        if (e instanceof SluiceError) return send(res, mappingOf(e.code).http, { error: { code: e.code, message: e.message } });
        send(res, 500, { error: { code: 'SLUICE_INTERNAL', message: (e as Error)?.message ?? String(e) } });
      });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, { error: { code: 'SLUICE_INVALID_ARGUMENT', message: 'only GET' } });
    const file = u.pathname === '/assets/app.js' ? { body: js, type: 'text/javascript; charset=utf-8' } : u.pathname === '/assets/app.css' ? { body: css, type: 'text/css; charset=utf-8' } : { body: Buffer.from(INDEX), type: 'text/html; charset=utf-8' };
    res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': file.type, 'cache-control': 'no-cache' });
    res.end(req.method === 'HEAD' ? undefined : file.body);
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(new SluiceError('SLUICE_BACKEND_UNAVAILABLE', `console cannot listen on ${o.host}:${o.port}: ${e.code ?? e.message}`, { cause: e })));
    server.listen(o.port, o.host, () => resolve());
  });
  sampler.start();
  const port = (server.address() as AddressInfo).port;
  const host = o.host.includes(':') ? `[${o.host}]` : o.host;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}:${port}/`,
    port,
    sample: () => sampler.sample(),
    close: () =>
      (closing ??= (async () => {
        tails.close();
        await sampler.close();
        await new Promise<void>((r) => {
          server.close(() => r());
          server.closeAllConnections();
        });
      })()),
  };
}
