/**
 * A whole sluice control plane in one process: the platform's backend, a driver, the controller and
 * the gRPC server (control API + KEDA external scaler). `sluice dev` and the controller Deployment
 * (`controller/main.ts`) both start it.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SluiceError } from '../bindings/errors.ts';
import type { Backend } from '../bindings/types.ts';
import { watchWriteLock } from '../bindings/local/index.ts';
import { nextGeneration, openBackend, openStateTable, type BackendSpec, type TlsFiles } from '../runtime/index.ts';
import { Controller } from './controller.ts';
import type { Driver } from './driver.ts';
import { startControlServer, type ControlServer } from './grpc/server.ts';
import { grpcServerCredentials } from './grpc/tls.ts';
import { KubernetesDriver } from './kubernetes/index.ts';
import { LocalDriver } from './local-driver.ts';
import { startMetricsServer } from './metrics.ts';

/** 'host:port' (or ':port', or 'port') → [host, port]; SLUICE_INVALID_ARGUMENT when malformed. */
export function splitHostPort(s: string): [string, number] {
  const m = /^(?:(.*):)?(\d{1,5})$/.exec(s);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new SluiceError('SLUICE_INVALID_ARGUMENT', `'${s}' is not host:port`);
  return [m[1] || '127.0.0.1', port];
}

/** Options of {@link startPlatform}. */
export interface PlatformOptions {
  /** The platform's backend (where functions, leases and checkpoints live). */
  backend: BackendSpec;
  /** Where workers run. @default 'local' */
  driver?: 'local' | 'kubernetes';
  /** Directory for worker configs and the generated token (local driver). @default <data dir>/run or ./.sluice-run */
  runDir?: string;
  /** Control API host. @default '127.0.0.1' */
  host?: string;
  /** Control API port (0: any free port). @default 7070 */
  port?: number;
  /** Accepted control tokens. @default $SLUICE_TOKEN, else a random token saved to <runDir>/../token */
  tokens?: string[];
  /** Tokens the KEDA external scaler accepts (trigger metadata `tokenFromEnv`). @default $SLUICE_SCALER_TOKEN when set, else the scaler is open */
  scalerTokens?: string[];
  /** Serve the control API over TLS (mTLS with `requireClientCert`); plaintext is then refused. @default plaintext */
  tls?: TlsFiles;
  /** Reconcile period. @default 1000 */
  intervalMs?: number;
  /** Serve the platform's Prometheus /metrics (controller + every worker) on this host:port (any free port when it is taken; see `metricsPort`). @default not served */
  metrics?: string;
  /** Controller events (scaling decisions, deploys). @default ignored */
  onEvent?: (e: { function: string; message: string }) => void;
  /**
   * Local store: a process holding the write lock longer than this is reported
   * (SLUICE_WRITE_LOCK_STALLED on stdout); one of this platform's workers that holds it while stopped is
   * killed, and the driver restarts it (bindings/local/write-lock.ts). 0 turns the watchdog off. @default 3000
   */
  writeLockHoldLimitMs?: number;
}

export interface Platform {
  backend: Backend;
  controller: Controller;
  driver: Driver;
  server: ControlServer;
  token: string;
  /** Port of /metrics, when served. */
  metricsPort?: number;
  /** Stops the server, the workers (gracefully) and the backend. */
  close(): Promise<void>;
}

/** Reads or creates the token file `<dir>/token`. */
export function ensureToken(dir: string): string {
  const f = join(dir, 'token');
  if (existsSync(f)) return readFileSync(f, 'utf8').trim();
  mkdirSync(dir, { recursive: true });
  const t = randomBytes(24).toString('base64url');
  writeFileSync(f, t, { mode: 0o600 });
  return t;
}

export async function startPlatform(o: PlatformOptions): Promise<Platform> {
  const backend = await openBackend(o.backend);
  const baseDir = o.backend.kind === 'local' ? o.backend.dir : join(process.cwd(), '.sluice-run');
  const runDir = o.runDir ?? join(baseDir, 'run');
  const tokens = o.tokens ?? (process.env.SLUICE_TOKEN ? [process.env.SLUICE_TOKEN] : [ensureToken(baseDir)]);
  let driver: Driver;
  if (o.driver === 'kubernetes') driver = new KubernetesDriver({});
  else {
    // A new generation fences the workers of a previous platform process on this data (orphans of a
    // SIGKILLed `sluice dev`): their leases are taken over at once and they exit when they see it.
    const generation = await nextGeneration(await openStateTable(backend));
    const local = new LocalDriver({ runDir, generation, ...(o.backend.kind === 'local' ? { localDir: o.backend.dir } : {}) });
    // And those still running (found by pid file) are stopped before ours start.
    await local.reapOrphans();
    driver = local;
  }
  const holdLimitMs = o.writeLockHoldLimitMs ?? 3000;
  const lockWatch =
    o.backend.kind === 'local' && holdLimitMs > 0
      ? watchWriteLock({ dir: o.backend.dir, holdLimitMs, ...(driver instanceof LocalDriver ? { killableRunDir: runDir } : {}), label: 'controller' })
      : undefined;
  const controller = await Controller.open({
    backend,
    driver,
    intervalMs: o.intervalMs ?? 1000,
    ...(o.onEvent ? { onEvent: o.onEvent } : {}),
    ...(o.backend.kind === 'local' && o.driver !== 'kubernetes' ? { localDir: o.backend.dir } : {}),
  });
  controller.start();
  const scalerTokens = o.scalerTokens ?? (process.env.SLUICE_SCALER_TOKEN ? [process.env.SLUICE_SCALER_TOKEN] : undefined);
  const server = await startControlServer({
    plane: controller,
    scaler: controller,
    tokens,
    ...(scalerTokens ? { scalerTokens } : {}),
    host: o.host ?? '127.0.0.1',
    port: o.port ?? 7070,
    ...(o.tls ? { credentials: grpcServerCredentials(o.tls) } : {}),
  });
  let metrics: Awaited<ReturnType<typeof startMetricsServer>> | undefined;
  if (o.metrics !== undefined) {
    const [host, port] = splitHostPort(o.metrics);
    const targets = driver instanceof LocalDriver ? () => driver.metricsTargets() : () => [];
    metrics = await startMetricsServer({ registry: controller.metrics.registry, refresh: () => controller.refreshMetrics(), targets, host, port, fallbackToFreePort: true });
  }
  return {
    backend,
    controller,
    driver,
    server,
    token: tokens[0]!,
    ...(metrics ? { metricsPort: metrics.port } : {}),
    async close() {
      await metrics?.close();
      await server.close();
      await controller.close();
      await lockWatch?.close();
      await backend.close();
    },
  };
}
