/**
 * Worker process entry: `node --import tsx runtime/worker-main.ts <config.json>` (or the config as JSON
 * in SLUICE_WORKER_CONFIG). The ordinal comes from SLUICE_ORDINAL, else from a StatefulSet pod name
 * (HOSTNAME `name-3` → 3), else the config; replicas from SLUICE_REPLICAS, else the config.
 *
 * Exit codes: 0 stopped cleanly (SIGTERM/SIGINT, all in-flight work committed); 2 bad configuration;
 * 3 stopped after the shutdown grace with work still in flight (it will be redelivered); 1 crashed.
 */
import { readFileSync } from 'node:fs';
import { serializeError } from '../bindings/errors.ts';
import { Worker } from './worker.ts';
import type { WorkerOptions } from './worker-options.ts';

/** Documented exit codes of the worker process. */
export const ExitCodes = { ok: 0, crashed: 1, badConfig: 2, forced: 3 } as const;

function config(): WorkerOptions {
  const arg = process.argv[2];
  const raw = arg ? readFileSync(arg, 'utf8') : process.env.SLUICE_WORKER_CONFIG;
  if (!raw) throw new Error('give the worker config as a file argument or in SLUICE_WORKER_CONFIG');
  const o = JSON.parse(raw) as WorkerOptions;
  const fromHost = /-(\d+)$/.exec(process.env.HOSTNAME ?? '')?.[1];
  // An empty SLUICE_ORDINAL (no pod-index label before Kubernetes 1.28) falls back to the pod name.
  const ordinal = process.env.SLUICE_ORDINAL || fromHost;
  if (ordinal !== undefined) o.ordinal = Number(ordinal);
  if (process.env.SLUICE_REPLICAS) o.replicas = Number(process.env.SLUICE_REPLICAS);
  // The live replica count comes from the state table (see Worker); a pod started by a scale-up may
  // see a stale count in its environment, so never start with ordinal >= replicas.
  o.replicas = Math.max(o.replicas ?? 1, (o.ordinal ?? 0) + 1);
  return o;
}

let worker: Worker;
try {
  worker = await Worker.start(config());
} catch (e) {
  // One pino-shaped JSON line, so the driver shows it as the worker's error (status, logs), with the stack.
  const err = serializeError(e);
  process.stderr.write(`${JSON.stringify({ level: 60, time: Date.now(), msg: `worker failed to start: ${err.message}`, err })}\n`);
  process.exit((e as { code?: string }).code === 'SLUICE_INVALID_ARGUMENT' || e instanceof SyntaxError ? ExitCodes.badConfig : ExitCodes.crashed);
}
process.stdout.write(`${JSON.stringify({ event: 'ready', pid: process.pid, ordinal: worker.options.ordinal, httpPort: worker.httpPort ?? null })}\n`);
let stopping = false;
const onSignal = (sig: string) => {
  if (stopping) return;
  stopping = true;
  worker.log.info({ signal: sig }, 'stopping');
  void worker.stop().then((clean) => process.exit(clean ? ExitCodes.ok : ExitCodes.forced));
};
process.on('SIGTERM', () => onSignal('SIGTERM'));
process.on('SIGINT', () => onSignal('SIGINT'));
process.on('SIGUSR2', () => {
  // Rescale without restart: SLUICE_RESCALE_FILE holds {"replicas": R, "ordinal": i, "batchesInFlight": n}.
  const f = process.env.SLUICE_RESCALE_FILE;
  if (!f) return;
  try {
    const r = JSON.parse(readFileSync(f, 'utf8')) as { replicas: number; ordinal?: number; batchesInFlight?: number };
    worker.rescale(r.replicas, r.ordinal, r.batchesInFlight);
  } catch (e) {
    worker.log.error({ err: e }, 'rescale failed');
  }
});
