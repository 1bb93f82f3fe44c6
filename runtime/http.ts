/** /metrics, /healthz and /readyz of a worker. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { WorkerMetrics } from './metrics.ts';

/** What the probes ask of the worker. */
export interface Probe {
  /** Alive: the event loop answers and the worker has not failed. */
  healthy(): boolean;
  /** Ready: running, backend open, handler threads up. */
  ready(): boolean;
  /** A small status document for humans. */
  status(): unknown;
}

/** Starts the server; resolves with its port. */
export async function startHttp(metrics: WorkerMetrics, probe: Probe, port: number, host: string): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    const url = req.url ?? '/';
    if (url.startsWith('/metrics.json')) {
      // For aggregation by the platform (controller/metrics-server.ts): prom-client's JSON form.
      metrics.registry
        .getMetricsAsJSON()
        .then((body) => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify(body));
        })
        .catch((e: Error) => {
          res.writeHead(500);
          res.end(e.message);
        });
      return;
    }
    if (url.startsWith('/metrics')) {
      metrics.registry
        .metrics()
        .then((body) => {
          res.writeHead(200, { 'content-type': metrics.registry.contentType });
          res.end(body);
        })
        .catch((e: Error) => {
          res.writeHead(500);
          res.end(e.message);
        });
      return;
    }
    const answer = (ok: boolean) => {
      res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok, status: probe.status() }));
    };
    if (url.startsWith('/healthz')) return answer(probe.healthy());
    if (url.startsWith('/readyz')) return answer(probe.ready());
    res.writeHead(404);
    res.end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return { server, port: (server.address() as AddressInfo).port };
}
