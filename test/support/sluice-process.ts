/**
 * Runs the real `sluice` command line as child processes for process tests: `startDev` starts
 * `sluice dev` on a free port and waits for its control API (and any lines asked for), `run` runs one
 * command and collects its output and exit code. Children get no SLUICE_* variables from the caller.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
export const sluiceBin = join(repoRoot, 'controller/cli/sluice.mjs');

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** The environment of the children: no SLUICE_* from the caller, so only the flags decide. */
export function childEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', ...extra };
  for (const k of Object.keys(env)) if (k.startsWith('SLUICE_') && !(k in extra)) delete env[k];
  return env;
}

/** Runs `cmd args` (default: node sluice.mjs) to its end, SIGKILLing it past `timeoutMs`. */
export function run(args: string[], o: { cwd?: string; timeoutMs?: number; cmd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const cmd = o.cmd ?? process.execPath;
    const p = spawn(cmd, o.cmd ? args : [sluiceBin, ...args], { cwd: o.cwd ?? repoRoot, env: o.env ?? childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    // Generous: on a loaded 2-core machine one CLI start (Node + tsx) has been measured past 30 s.
    const timeoutMs = o.timeoutMs ?? 90_000;
    const t = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')} did not finish in ${timeoutMs} ms; stdout: ${stdout.slice(-3000)}; stderr: ${stderr.slice(-3000)}`));
    }, timeoutMs);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}

/** A running `sluice dev`. */
export interface Dev {
  proc: ChildProcess;
  /** host:port of its control API. */
  server: string;
  /** Everything it printed on stdout so far. */
  out(): string;
  /** Waits until stdout matches `re` (after `from` characters), returning the match. */
  waitFor(re: RegExp, timeoutMs?: number, from?: number): Promise<RegExpExecArray>;
  /** SIGTERM, then SIGKILL after 15 s; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** Starts `sluice dev --data <data> --port 0 ...extra` in `cwd` and waits for its control API. */
export async function startDev(o: { data: string; cwd?: string; extra?: string[]; cmd?: string; args?: string[]; env?: NodeJS.ProcessEnv }): Promise<Dev> {
  const args = o.args ?? [sluiceBin, 'dev', '--data', o.data, '--port', '0', ...(o.extra ?? [])];
  const p = spawn(o.cmd ?? process.execPath, args, { cwd: o.cwd ?? repoRoot, env: o.env ?? childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const waiters = new Set<() => void>();
  p.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    for (const w of waiters) w();
  });
  p.stderr!.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-8000)));
  const exited = new Promise<number | null>((r) => p.on('exit', (c) => r(c)));
  const waitFor = (re: RegExp, timeoutMs = 30_000, from = 0): Promise<RegExpExecArray> =>
    new Promise((resolve, reject) => {
      const check = () => {
        const m = re.exec(out.slice(from));
        if (m) {
          waiters.delete(check);
          clearTimeout(t);
          resolve(m);
        }
      };
      const t = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`sluice dev did not print ${re} in ${timeoutMs} ms; stdout: ${out.slice(-4000)}; stderr: ${err}`));
      }, timeoutMs);
      waiters.add(check);
      void exited.then((c) => {
        if (!waiters.has(check)) return;
        waiters.delete(check);
        clearTimeout(t);
        reject(new Error(`sluice dev exited with ${c}; stdout: ${out.slice(-4000)}; stderr: ${err}`));
      });
      check();
    });
  const m = await waitFor(/control API on (127\.0\.0\.1:\d+)/, 90_000);
  return {
    proc: p,
    server: m[1]!,
    out: () => out,
    waitFor,
    async stop() {
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), 15_000);
      const c = await exited;
      clearTimeout(t);
      return c;
    },
  };
}

/** Polls until a value (see poll.ts). */
export { until } from './poll.ts';

