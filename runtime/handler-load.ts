/**
 * Loads a handler module in a sandbox child process before anything is deployed, so a syntax error,
 * a missing import, a throw at import time or a default export that is not a function definition
 * fails the deploy with SLUICE_HANDLER_LOAD (message, file:line:column and the real stack) instead of
 * a crash-looping worker. The child is killed after `timeoutMs`: a module that never finishes
 * loading (a top-level infinite loop) cannot hold up the controller.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { SluiceError } from '../bindings/errors.ts';
import { nodeArgs } from './node-loader.ts';

const sandboxMain = fileURLToPath(new URL('./handler-load-main.ts', import.meta.url));

/** Why a module did not load: the real error, and where it is (1-based line and column). */
export interface LoadFailure {
  name: string;
  message: string;
  stack?: string;
  file?: string;
  line?: number;
  column?: number;
}

/** What the sandbox reports. */
export type LoadReport = { ok: true } | { ok: false; error: LoadFailure };

/** Options of {@link checkHandlerLoads}. */
export interface CheckHandlerOptions {
  /** Environment of the sandbox. @default process.env */
  env?: NodeJS.ProcessEnv;
  /** Kill the sandbox after this long. @default 30000 */
  timeoutMs?: number;
  /** Function name, for messages. @default the module path */
  function?: string;
}

/** `file:line:column` of a failure, as editors and terminals link it. */
export function whereOf(f: LoadFailure): string {
  return f.file === undefined ? '' : `${f.file}${f.line !== undefined ? `:${f.line}${f.column !== undefined ? `:${f.column}` : ''}` : ''}`;
}

/** Resolves when `module` loads and default-exports a function definition; else SLUICE_HANDLER_LOAD. */
export async function checkHandlerLoads(module: string, options: CheckHandlerOptions = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const what = options.function !== undefined ? `function '${options.function}'` : module;
  const report = await new Promise<LoadReport>((resolve, reject) => {
    const child = spawn(process.execPath, nodeArgs(sandboxMain, module), { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], env: options.env ?? process.env });
    let stderr = '';
    let got: LoadReport | undefined;
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4000)));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      got ??= { ok: false, error: { name: 'TimeoutError', message: `${module} did not finish loading within ${timeoutMs} ms`, file: module } };
    }, timeoutMs);
    child.on('message', (m: LoadReport) => (got ??= m));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new SluiceError('SLUICE_INTERNAL', `cannot start the handler sandbox: ${e.message}`, { cause: e }));
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      // A module calling process.exit() at import time never reports: that is a load failure too.
      resolve(got ?? { ok: false, error: { name: 'Error', message: `${module} ended the process while loading (${signal ?? `exit ${code}`})${stderr.trim() ? `: ${stderr.trim()}` : ''}`, file: module } });
    });
  });
  if (report.ok) return;
  const f = report.error;
  const where = whereOf(f);
  const first = f.message.split('\n').find((l) => l.includes(' ERROR: '))?.replace(/^.*? ERROR: /, '') ?? f.message.split('\n')[0];
  throw new SluiceError('SLUICE_HANDLER_LOAD', `${what} does not load: ${first}${where ? ` (at ${where})` : ''}`, {
    details: { ...f },
  });
}
