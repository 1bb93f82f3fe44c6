/**
 * Worker process entry: `node --import tsx runtime/worker-main.ts <config.json>` (or the config as JSON
 * in SLUICE_WORKER_CONFIG). The ordinal comes from SLUICE_ORDINAL, else from a StatefulSet pod name
 * (HOSTNAME `name-3` → 3), else the config; replicas from SLUICE_REPLICAS, else the config.
 *
 * SLUICE_BACKEND_TOKEN / SLUICE_BACKEND_PASSWORD, when set, are the NATS token / password (the local
 * driver keeps them out of the config file).
 *
 * Exit codes: 0 stopped cleanly (SIGTERM/SIGINT, parent gone, fenced; all in-flight work committed);
 * 2 bad configuration; 3 stopped after the shutdown grace with work still in flight (it will be
 * redelivered); 1 crashed.
 *
 * Signals are installed before anything else is loaded: the local driver sends SIGUSR2 on every
 * rescale, and Node's default action for SIGUSR2 is to terminate — a worker still loading its modules
 * (hundreds of ms under tsx on a loaded machine) died of a scale-up. The handlers only record the
 * request until the worker runs; the driver also waits for the `signals` line on stdout before it
 * signals at all, and a starting worker reads the rescale file once it runs, so nothing is missed.
 *
 * Parent death (SLUICE_PARENT_PID, set by the local driver): when the platform that started this worker
 * dies — even by SIGKILL, which it cannot forward — the worker notices within a second (its stdin pipe
 * closes; process.ppid changes) and stops gracefully, releasing its leases. Without this, workers of a
 * killed `sluice dev` kept their leases and kept processing after the platform was restarted or the
 * function removed.
 */
let worker: import('./worker.ts').Worker | undefined;
let pendingStop: string | undefined;
let pendingRescale = false;
let stopping = false;

function requestStop(reason: string): void {
  if (!worker) {
    pendingStop ??= reason;
    return;
  }
  if (stopping) return;
  stopping = true;
  worker.log.info({ reason }, 'stopping');
  // Force deadline past the grace: closing resources can hang (seen: an orphan on a full disk whose
  // store never finished closing kept running for 50 minutes after its parent died).
  setTimeout(() => {
    worker?.log.error({ graceMs: worker.options.shutdownGraceMs }, 'stop did not finish within the grace plus 10 s; exiting');
    process.exit(ExitCodes.forced);
  }, worker.options.shutdownGraceMs + 10_000).unref();
  void worker.stop().then((clean) => process.exit(clean ? ExitCodes.ok : ExitCodes.forced));
}

function applyRescaleFile(): void {
  // Rescale without restart: SLUICE_RESCALE_FILE holds {"replicas": R, "ordinal": i, "batchesInFlight": n}.
  const f = process.env.SLUICE_RESCALE_FILE;
  if (!f || !worker) return;
  try {
    const r = JSON.parse(readFileSync(f, 'utf8')) as { replicas: number; ordinal?: number; batchesInFlight?: number };
    worker.rescale(r.replicas, r.ordinal, r.batchesInFlight);
  } catch (e) {
    worker.log.error({ err: e }, 'rescale failed');
  }
}

process.on('SIGUSR2', () => {
  if (!worker) pendingRescale = true;
  else applyRescaleFile();
});
process.on('SIGTERM', () => requestStop('SIGTERM'));
process.on('SIGINT', () => requestStop('SIGINT'));

const { readFileSync } = await import('node:fs');
const { Socket } = await import('node:net');

/** Documented exit codes of the worker process. */
export const ExitCodes = { ok: 0, crashed: 1, badConfig: 2, forced: 3 } as const;

// Tell the driver that signals are safe from now on.
process.stdout.write(`${JSON.stringify({ event: 'signals', pid: process.pid })}\n`);

const parentPid = Number(process.env.SLUICE_PARENT_PID ?? '');
if (Number.isInteger(parentPid) && parentPid > 0) {
  // A dead parent leaves our stdout/stderr pipes without a reader: a write must not crash the drain.
  process.stdout.on('error', () => undefined);
  process.stderr.on('error', () => undefined);
  const gone = () => requestStop('parent exited');
  // The driver keeps our stdin as an open pipe; it closes when the parent dies, however it died.
  process.stdin.on('end', gone).on('close', gone).on('error', gone).resume();
  // ppid polling covers a parent that handed stdin elsewhere (or a pipe kept open by a grandchild).
  setInterval(() => {
    if (process.ppid !== parentPid) gone();
  }, 500).unref();
}

const { Worker } = await import('./worker.ts');
type WorkerOptions = import('./worker-options.ts').WorkerOptions;

function config(): WorkerOptions {
  const arg = process.argv[2];
  const raw = arg ? readFileSync(arg, 'utf8') : process.env.SLUICE_WORKER_CONFIG;
  if (!raw) throw new Error('give the worker config as a file argument or in SLUICE_WORKER_CONFIG');
  const o = JSON.parse(raw) as WorkerOptions;
  // The local driver passes the NATS token here rather than in the config file (which stays on disk).
  const token = process.env.SLUICE_BACKEND_TOKEN;
  if (token && o.backend?.kind === 'nats') o.backend = { ...o.backend, token };
  const pass = process.env.SLUICE_BACKEND_PASSWORD;
  if (pass && o.backend?.kind === 'nats') o.backend = { ...o.backend, pass };
  // Not inherited by anything the handlers spawn.
  delete process.env.SLUICE_BACKEND_TOKEN;
  delete process.env.SLUICE_BACKEND_PASSWORD;
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

try {
  worker = await Worker.start(config(), {
    onFenced: () => requestStop('fenced by a newer platform'),
    // Leases released: the driver wakes the next owners now, not when this process has exited.
    onDrained: () => process.stdout.write(`${JSON.stringify({ event: 'drained', pid: process.pid })}\n`),
  });
} catch (e) {
  // One pino-shaped JSON line, so the driver shows it as the worker's error (status, logs), with the stack.
  const { serializeError } = await import('../bindings/errors.ts');
  const err = serializeError(e);
  process.stderr.write(`${JSON.stringify({ level: 60, time: Date.now(), msg: `worker failed to start: ${err.message}`, err })}\n`);
  process.exit((e as { code?: string }).code === 'SLUICE_INVALID_ARGUMENT' || e instanceof SyntaxError ? ExitCodes.badConfig : ExitCodes.crashed);
}
// Connections the platform's ingress hands over on the IPC channel (the local driver opens one, and
// sends only once it has read our 'ready' line below): runtime/triggers/http-handoff.ts. The channel
// must not keep this process alive on its own.
if (process.channel) {
  const { isHandOff } = await import('./triggers/http-handoff.ts');
  const w = worker;
  process.on('message', (m: unknown, handle: unknown) => {
    if (isHandOff(m) && handle instanceof Socket) w.adoptHttpConnection(handle, m);
    else if (handle && typeof (handle as { destroy?: () => void }).destroy === 'function') (handle as { destroy(): void }).destroy();
  });
  process.channel.unref();
}
process.stdout.write(`${JSON.stringify({ event: 'ready', pid: process.pid, ordinal: worker.options.ordinal, httpPort: worker.httpPort ?? null })}\n`);
// A rescale written while we were starting (signalled or not) applies now; so does a stop asked then.
if (pendingRescale || process.env.SLUICE_RESCALE_FILE) applyRescaleFile();
if (pendingStop) requestStop(pendingStop);
