/**
 * The handler sandbox (child process of {@link checkHandlerLoads}): imports one handler module,
 * checks that its default export is a function definition, and reports through the IPC channel
 * (stdout belongs to the handler's own `console.log`). `init` is not run: it may reach real services,
 * and its failures are reported by the workers (status, metrics) like every later error.
 */
import { readFileSync } from 'node:fs';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { handlerGraph } from './handler-graph.ts';
import type { LoadReport, LoadFailure } from './handler-load.ts';

const module = process.argv[2]!;

function send(r: LoadReport): void {
  process.send!(r, () => process.exit(0));
}

/** 1-based line and column of the first `needle` in `file`, if any. */
function find(file: string, needle: string | RegExp): { line: number; column: number } | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    const c = typeof needle === 'string' ? l.indexOf(needle) : l.search(needle);
    if (c >= 0) return { line: i + 1, column: c + 1 };
  }
  return undefined;
}

const asPath = (f: string): string => (f.startsWith('file://') ? fileURLToPath(f) : f);

/** Where the error really is: esbuild's message, the unresolved import, or the first user frame. */
async function locate(err: Error & { code?: string }): Promise<Pick<LoadFailure, 'file' | 'line' | 'column'>> {
  // tsx's transform errors: "/abs/file.ts:4:0: ERROR: Expected ..." (esbuild columns are 0-based).
  const t = /^(\/[^\n]*?):(\d+):(\d+): ERROR: /m.exec(err.message);
  if (t) return { file: t[1]!, line: Number(t[2]), column: Number(t[3]) + 1 };
  if (err.code === 'ERR_MODULE_NOT_FOUND' || err.code === 'ERR_PACKAGE_PATH_NOT_EXPORTED') {
    // esbuild resolves relative imports like Node and names the line of the import.
    const g = await handlerGraph(module);
    const p = g.problems.find((x) => x.file !== undefined);
    if (p?.file !== undefined) return { file: p.file, ...(p.line !== undefined ? { line: p.line } : {}), ...(p.column !== undefined ? { column: p.column } : {}) };
    // A package import (external to esbuild): find its specifier in the importer.
    const m = /Cannot find (?:module|package) '([^']+)' imported from (.+)$/m.exec(err.message);
    if (m) {
      const importer = asPath(m[2]!.trim());
      const spec = m[1]!.startsWith('/') ? m[1]!.split('/').pop()!.replace(/\.[^.]+$/, '') : m[1]!;
      const at = find(importer, spec);
      return { file: importer, ...at };
    }
  }
  for (const frame of (err.stack ?? '').split('\n').slice(1)) {
    const f = /\(?((?:file:\/\/)?\/[^():]+):(\d+):(\d+)\)?\s*$/.exec(frame);
    if (f && !f[1]!.includes('/node_modules/') && !f[1]!.startsWith('node:')) return { file: asPath(f[1]!), line: Number(f[2]), column: Number(f[3]) };
  }
  return { file: module };
}

try {
  const mod = (await import(pathToFileURL(module).href)) as { default?: unknown };
  const def = mod.default as { handler?: unknown; http?: unknown } | null | undefined;
  // A batch handler (defineFunction) or an HTTP handler (defineHttpFunction).
  if (typeof def !== 'object' || def === null || (typeof def.handler !== 'function' && typeof def.http !== 'function')) {
    const what = def === undefined ? 'no default export' : typeof def === 'object' && def !== null ? 'a default export without a handler function' : `a default export of type ${typeof def} (${String(def).slice(0, 40)})`;
    const at = find(module, /export\s+default\b/);
    send({ ok: false, error: { name: 'TypeError', message: `${module} has ${what}; it must \`export default defineFunction({ handler })\` (or defineHttpFunction({ http }) for an http trigger)`, file: module, ...at } });
  } else send({ ok: true });
} catch (e) {
  const err = e instanceof Error ? (e as Error & { code?: string }) : new Error(String(e));
  const error: LoadFailure = { name: err.name, message: err.message, ...(err.stack !== undefined ? { stack: err.stack } : {}), ...(await locate(err)) };
  send({ ok: false, error });
}
