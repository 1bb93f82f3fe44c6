/**
 * A vitest reporter that makes a stuck test run say where it is stuck, and ends it.
 *
 * vitest bounds each test and hook (60 s here) but not a test file: a file whose every test runs into its
 * timeout, or a fork whose event loop is blocked in a synchronous call, holds the run for as long as it
 * takes, and the default reporter prints nothing about a file until it ends. This reporter:
 * - prints a failed test at once (file, name, first line of the error), not only when its file ends;
 * - prints each file still running past {@link WatchdogOptions.slowFileS}, with its current test and the
 *   process tree under the run (servers and workers the tests started), once per file;
 * - past {@link WatchdogOptions.runLimitS} prints the running files and the process tree again, kills
 *   every process under the run and exits 1, so a stuck run fails with its cause in the log's tail
 *   instead of running into the CI's own limit.
 */
import { execFileSync } from 'node:child_process';
import type { Reporter, TestCase, TestModule } from 'vitest/node';

export interface WatchdogOptions {
  /** Seconds a test file may run before it is reported as slow (once). Default 240. */
  slowFileS?: number;
  /** Seconds the whole run may take before it is ended with exit code 1. Default 2400 (40 min; CI's own limit is far above, a whole run takes 10–16 min here). */
  runLimitS?: number;
}

interface Running {
  file: string;
  since: number;
  test?: { name: string; since: number };
  reported: boolean;
}

const envSeconds = (name: string, dflt: number): number => {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : dflt;
};

/** Processes under `root` (not `root` itself), depth first: pid and one line each, indented by depth. */
function processTree(root: number): { pid: number; line: string }[] {
  let out: string;
  try {
    out = execFileSync('ps', ['-eo', 'pid=,ppid=,stat=,etimes=,args='], { encoding: 'utf8', timeout: 5_000 });
  } catch (e) {
    return [{ pid: 0, line: `(ps failed: ${(e as Error).message})` }];
  }
  const kids = new Map<number, { pid: number; line: string }[]>();
  for (const raw of out.split('\n')) {
    const m = /^\s*(\d+)\s+(\d+)\s+(\S+)\s+(\d+)\s+(.*)$/.exec(raw);
    if (!m || m[5]!.startsWith('ps -eo pid=')) continue;
    const [pid, ppid] = [Number(m[1]), Number(m[2])];
    let list = kids.get(ppid);
    if (!list) kids.set(ppid, (list = []));
    list.push({ pid, line: `${pid} ${m[3]} ${m[4]}s ${m[5]!.slice(0, 200)}` });
  }
  const tree: { pid: number; line: string }[] = [];
  const walk = (pid: number, depth: number): void => {
    for (const k of kids.get(pid) ?? []) {
      tree.push({ pid: k.pid, line: `${'  '.repeat(depth)}${k.line}` });
      walk(k.pid, depth + 1);
    }
  };
  walk(root, 1);
  return tree;
}

export default class RunWatchdog implements Reporter {
  readonly #slowFileMs: number;
  readonly #runLimitMs: number;
  readonly #running = new Map<string, Running>();
  #started = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: WatchdogOptions = {}) {
    this.#slowFileMs = 1000 * (opts.slowFileS ?? envSeconds('SLUICE_TEST_SLOW_FILE_S', 240));
    this.#runLimitMs = 1000 * (opts.runLimitS ?? envSeconds('SLUICE_TEST_RUN_LIMIT_S', 2400));
  }

  onTestRunStart(): void {
    this.#started = Date.now();
    this.#timer = setInterval(() => this.#check(), 15_000);
    this.#timer.unref();
  }

  onTestRunEnd(): void {
    clearInterval(this.#timer);
  }

  onTestModuleStart(m: TestModule): void {
    this.#running.set(m.moduleId, { file: m.relativeModuleId, since: Date.now(), reported: false });
  }

  onTestModuleEnd(m: TestModule): void {
    this.#running.delete(m.moduleId);
  }

  onTestCaseReady(t: TestCase): void {
    const r = this.#running.get(t.module.moduleId);
    if (r) r.test = { name: t.fullName, since: Date.now() };
  }

  onTestCaseResult(t: TestCase): void {
    const res = t.result();
    if (res.state !== 'failed') return;
    const first = (res.errors?.[0]?.message ?? '').split('\n')[0];
    this.#say(`failed: ${t.module.relativeModuleId} > ${t.fullName}: ${first}`);
  }

  #say(line: string): void {
    process.stderr.write(`[watchdog ${Math.round((Date.now() - this.#started) / 1000)}s] ${line}\n`);
  }

  #describe(r: Running, now: number): string {
    const t = r.test ? `, current test '${r.test.name}' for ${Math.round((now - r.test.since) / 1000)} s` : '';
    return `${r.file} running for ${Math.round((now - r.since) / 1000)} s${t}`;
  }

  #check(): void {
    const now = Date.now();
    if (now - this.#started > this.#runLimitMs) {
      this.#say(`the test run passed its limit of ${this.#runLimitMs / 1000} s (SLUICE_TEST_RUN_LIMIT_S); still running:`);
      for (const r of this.#running.values()) this.#say(`  ${this.#describe(r, now)}`);
      const tree = processTree(process.pid);
      for (const p of tree) this.#say(`  ${p.line}`);
      for (const { pid } of tree) {
        if (pid === 0) continue;
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      process.exit(1);
    }
    for (const r of this.#running.values()) {
      if (r.reported || now - r.since < this.#slowFileMs) continue;
      r.reported = true;
      this.#say(`slow: ${this.#describe(r, now)}; processes under the run:`);
      for (const p of processTree(process.pid)) this.#say(`  ${p.line}`);
    }
  }
}
