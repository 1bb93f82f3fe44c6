/**
 * The platform's Prometheus metrics: the controller's own series (desired and ready replicas, lag per
 * function, reconcile errors and durations, scale decisions, worker restarts and last-error time) and
 * the series of every worker, merged into one `/metrics` page ({@link startMetricsServer}).
 *
 * Workers keep their own registries (runtime/metrics.ts); the local driver gives each one an HTTP port
 * and the page fetches their `/metrics.json` on every scrape, adds a `worker` label (the ordinal) and
 * merges them with prom-client's AggregatorRegistry — so two workers' series never collide, and there
 * is one scrape target for the whole local platform.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';

/** Metrics of the controller. */
export class ControllerMetrics {
  readonly registry = new Registry();
  readonly desiredReplicas = new Gauge({ name: 'sluice_controller_desired_replicas', help: 'Replicas the controller asks for, per function', labelNames: ['function'], registers: [this.registry] });
  readonly readyReplicas = new Gauge({ name: 'sluice_controller_ready_replicas', help: 'Replicas running and ready, per function', labelNames: ['function'], registers: [this.registry] });
  readonly lag = new Gauge({ name: 'sluice_controller_lag_records', help: 'Records not yet handled over all shards, per function', labelNames: ['function'], registers: [this.registry] });
  readonly reconcileErrors = new Counter({ name: 'sluice_controller_reconcile_errors_total', help: 'Reconcile rounds that failed, per function', labelNames: ['function'], registers: [this.registry] });
  readonly reconcileSeconds = new Histogram({ name: 'sluice_controller_reconcile_seconds', help: 'Duration of one reconcile round over every function', buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5], registers: [this.registry] });
  readonly scaleDecisions = new Counter({ name: 'sluice_controller_scale_decisions_total', help: 'Replica changes decided by the autoscaler, per function and direction', labelNames: ['function', 'direction'], registers: [this.registry] });
  readonly restarts = new Gauge({ name: 'sluice_function_worker_restarts', help: 'Restarts of crashed workers since the revision was applied', labelNames: ['function'], registers: [this.registry] });
  readonly lastErrorTime = new Gauge({ name: 'sluice_function_last_error_timestamp_seconds', help: 'Time of the last error a worker reported or died of (0: none)', labelNames: ['function'], registers: [this.registry] });
  readonly loadFailures = new Counter({ name: 'sluice_controller_deploys_refused_total', help: 'Deploys refused because the handler did not load or a binding is missing', labelNames: ['function', 'code'], registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }
}

/** A worker's metrics endpoint. */
export interface MetricsTarget {
  function: string;
  ordinal: number;
  /** e.g. http://127.0.0.1:40123 */
  url: string;
}

/** Options of {@link startMetricsServer}. */
export interface MetricsServerOptions {
  /** The controller's registry. */
  registry: Registry;
  /** Refreshes the registry's per-scrape gauges (ready replicas, restarts) before a scrape. @default none */
  refresh?: () => Promise<void>;
  /** The workers to merge in (asked on each scrape). @default none */
  targets?: () => MetricsTarget[];
  /** @default '127.0.0.1' */
  host?: string;
  /** 0: any free port. @default 0 */
  port?: number;
  /** When the port is taken, listen on any free port instead of failing. @default false */
  fallbackToFreePort?: boolean;
  /** Time to wait for one worker's answer; a slow worker is left out of that scrape. @default 2000 */
  workerTimeoutMs?: number;
}

async function workerMetrics(t: MetricsTarget, timeoutMs: number): Promise<MetricObjectWithValues<MetricValue<string>>[]> {
  const r = await fetch(`${t.url}/metrics.json`, { signal: AbortSignal.timeout(timeoutMs) });
  if (!r.ok) throw new Error(`HTTP ${r.status}`);
  const metrics = (await r.json()) as MetricObjectWithValues<MetricValue<string>>[];
  for (const m of metrics) for (const v of m.values) (v.labels as Record<string, string | number>).worker = String(t.ordinal);
  return metrics;
}

/** Serves GET /metrics: the controller's registry plus every worker's, merged. */
export async function startMetricsServer(o: MetricsServerOptions): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  const timeoutMs = o.workerTimeoutMs ?? 2000;
  const server = createServer((req, res) => {
    if (!(req.url ?? '/').startsWith('/metrics')) {
      res.writeHead(404);
      res.end();
      return;
    }
    void (async () => {
      try {
        await o.refresh?.();
        const own = await o.registry.getMetricsAsJSON();
        const parts = await Promise.all((o.targets?.() ?? []).map((t) => workerMetrics(t, timeoutMs).catch(() => [])));
        // Series are told apart by their labels (function, worker), so aggregation merges and never sums them.
        const merged = AggregatorRegistry.aggregate([own, ...parts] as Parameters<typeof AggregatorRegistry.aggregate>[0]);
        const body = await merged.metrics();
        res.writeHead(200, { 'content-type': merged.contentType });
        res.end(body);
      } catch (e) {
        res.writeHead(500);
        res.end((e as Error).message);
      }
    })();
  });
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, o.host ?? '127.0.0.1', () => resolve());
    });
  try {
    await listen(o.port ?? 0);
  } catch (e) {
    // A second platform on this machine (or a test run beside one): any free port, which the caller prints.
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || !o.fallbackToFreePort) throw e;
    await listen(0);
  }
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
