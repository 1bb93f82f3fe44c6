/**
 * Runs a function's handler once in a child process of its own ({@link invokeInChild}), never in the
 * caller: a handler that spins forever is SIGKILLed at its timeout (plus a grace for start-up), and one
 * that calls `process.exit` ends only its own process. Either way the caller gets a result whose
 * `error` says what happened, with the code SLUICE_HANDLER_TIMEOUT or SLUICE_HANDLER_FAILED.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { SerializedError } from '../bindings/errors.ts';
import type { BatchEffects } from '../functions/effects.ts';
import type { SyntheticRecord } from '../functions/testing.ts';
import type { BackendSpec } from './backend-spec.ts';
import type { BindingSpec } from './batch-types.ts';
import { nodeArgs } from './node-loader.ts';

const invokeMain = fileURLToPath(new URL('./invoke-main.ts', import.meta.url));

/** What the invoke process is asked to do. */
export interface InvokeChildRequest {
  function: string;
  /** Absolute path of the handler module. */
  module: string;
  bindings: readonly BindingSpec[];
  /** The platform's backend (used unless `dryRun`). */
  backend: BackendSpec;
  /** Bindings on a scratch store instead of `backend`. */
  dryRun: boolean;
  /** The handler's timeout (the spec's). */
  timeoutMs: number;
  record: SyntheticRecord;
}

/** What the handler declared, its log lines, and anything it printed. */
export interface InvokeChildResult extends BatchEffects {
  logs: object[];
  durationMs: number;
  /** Lines the handler wrote to stdout/stderr (console.log), in order. */
  output?: string[];
}

/** Options of {@link invokeInChild}. */
export interface InvokeInChildOptions {
  /** Environment of the child (secrets are read from it). @default process.env */
  env?: NodeJS.ProcessEnv;
  /** Time for the child to start, load the module and bind (a module that never finishes loading is killed then). @default 60000 */
  startupMs?: number;
  /** Past the handler's timeout, how long its process may take to answer before it is killed. @default 1000 */
  graceMs?: number;
}

function failure(code: string, message: string): NonNullable<BatchEffects['error']> {
  return { error: { name: 'SluiceError', code, message }, nonRetryable: false };
}

/** Runs the handler in a fresh child process; resolves with the result (never rejects for handler failures). */
export function invokeInChild(req: InvokeChildRequest, options: InvokeInChildOptions = {}): Promise<InvokeChildResult> {
  const graceMs = options.graceMs ?? 1000;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, nodeArgs(invokeMain), { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], serialization: 'advanced', env: options.env ?? process.env });
    const output: string[] = [];
    const keep = (d: string) => {
      for (const l of d.split('\n')) if (l !== '' && output.length < 1000) output.push(l);
    };
    child.stdout!.setEncoding('utf8').on('data', keep);
    child.stderr!.setEncoding('utf8').on('data', keep);
    let reply: { ok: true; result: InvokeChildResult } | { ok: false; error: SerializedError } | undefined;
    let timedOut = false;
    const started = Date.now();
    // A handler that never yields cannot be stopped from inside: end its process. Until the module has
    // loaded the bound is the start-up time (a loaded machine is slow to start Node); then the timeout.
    const kill = (what: 'startup' | 'handler') => () => {
      timedOut = what === 'handler';
      startupExpired = what === 'startup';
      child.kill('SIGKILL');
    };
    let startupExpired = false;
    let timer = setTimeout(kill('startup'), options.startupMs ?? 60_000);
    child.on('message', (m: typeof reply | { started: true }) => {
      if (m && 'started' in m) {
        clearTimeout(timer);
        timer = setTimeout(kill('handler'), req.timeoutMs + graceMs);
        return;
      }
      reply ??= m;
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ records: [], counters: {}, logs: [], durationMs: 0, output, error: failure('SLUICE_INTERNAL', `cannot start the invoke process: ${e.message}`) });
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      const durationMs = Date.now() - started;
      if (reply?.ok) return resolve({ ...reply.result, output });
      if (reply && !reply.ok) return resolve({ records: [], counters: {}, logs: [], durationMs, output, error: { error: reply.error, nonRetryable: false } });
      if (startupExpired)
        return resolve({ records: [], counters: {}, logs: [], durationMs, output, error: failure('SLUICE_HANDLER_LOAD', `function '${req.function}': the handler did not load within ${options.startupMs ?? 60_000} ms and was killed`) });
      if (timedOut)
        return resolve({ records: [], counters: {}, logs: [], durationMs, output, error: failure('SLUICE_HANDLER_TIMEOUT', `function '${req.function}': handler ran past its timeout of ${req.timeoutMs} ms and was killed`) });
      resolve({ records: [], counters: {}, logs: [], durationMs, output, error: failure('SLUICE_HANDLER_FAILED', `function '${req.function}': the handler ended its process (${signal ?? `exit code ${code}`}) before returning`) });
    });
    child.send(req);
  });
}
