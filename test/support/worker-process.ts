/** A real worker process (runtime/worker-main.ts) for process-level fault tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const workerMain = fileURLToPath(new URL('../../runtime/worker-main.ts', import.meta.url));

/** Starts a worker process; resolves once it reports ready. */
export async function startWorkerProcess(configFile: string, env: Record<string, string> = {}): Promise<{ proc: ChildProcess; exit: Promise<number | null>; stderr: () => string }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', workerMain, configFile], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let err = '';
  let out = '';
  proc.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-8000)));
  const exit = new Promise<number | null>((r) => proc.on('exit', (c) => r(c)));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`worker did not start in 30 s: ${err}`)), 30_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('"event":"ready"')) {
        clearTimeout(t);
        resolve();
      }
    });
    void exit.then((c) => {
      clearTimeout(t);
      reject(new Error(`worker exited with ${c} before ready: ${err}`));
    });
  });
  return { proc, exit, stderr: () => err };
}

/** A running worker process, as {@link startWorkerProcess} returns it. */
export type WorkerProcess = Awaited<ReturnType<typeof startWorkerProcess>>;

/**
 * SIGKILLs the worker at random moments (every `minPauseMs` + up to `jitterMs`) and restarts it from
 * `configFile`, until `busy()` turns false and at least `minKills` kills happened (at most `maxKills`).
 * Returns the worker running at the end and the number of kills.
 */
export async function killRepeatedly(
  first: WorkerProcess,
  configFile: string,
  o: { busy: () => boolean; minKills: number; maxKills: number; minPauseMs: number; jitterMs: number },
): Promise<{ worker: WorkerProcess; kills: number }> {
  let worker = first;
  let kills = 0;
  while (o.busy() || kills < o.minKills) {
    await new Promise((r) => setTimeout(r, o.minPauseMs + Math.floor(Math.random() * o.jitterMs)));
    worker.proc.kill('SIGKILL');
    await worker.exit;
    kills++;
    worker = await startWorkerProcess(configFile);
    if (kills >= o.maxKills) break;
  }
  return { worker, kills };
}
