/**
 * The import graph of a handler module: every source file it loads, found by asking esbuild to bundle
 * it (nothing is written; `packages: 'external'` stops at package imports) and reading the metafile.
 *
 * Why esbuild's graph and not "watch the handler's folder": handlers import shared code from outside
 * their folder (`../lib/util.ts`) and folders hold files that are not code (samples, test data, a
 * README); a folder watch misses the first and reloads on the second. esbuild is already sluice's
 * TypeScript compiler (tsx runs on it), resolves like Node plus tsconfig, and bundles a handler in a
 * few ms. What it cannot see — a computed `import(name)` — is not reloaded; the handler file itself
 * always is. Sources inside node_modules are left out: installs are not edits.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve, sep } from 'node:path';
import { build, type Message } from 'esbuild';

/** One problem esbuild found (syntax error, unresolved relative import), 1-based line and column. */
export interface GraphProblem {
  message: string;
  file?: string;
  line?: number;
  column?: number;
}

/** What {@link handlerGraph} found. */
export interface HandlerGraph {
  /** Absolute paths of the handler and every local source it imports, sorted (always holds the handler). */
  files: string[];
  /** Problems that stop the graph from being complete (empty when it is). */
  problems: GraphProblem[];
}

function problem(m: Message, cwd: string): GraphProblem {
  const p: GraphProblem = { message: m.text };
  if (m.location) {
    p.file = isAbsolute(m.location.file) ? m.location.file : resolve(cwd, m.location.file);
    p.line = m.location.line;
    p.column = m.location.column + 1;
  }
  return p;
}

/** The local import graph of `module` (an absolute path). Never throws for a broken handler. */
export async function handlerGraph(module: string): Promise<HandlerGraph> {
  const cwd = process.cwd();
  try {
    const r = await build({
      entryPoints: [module],
      bundle: true,
      write: false,
      metafile: true,
      platform: 'node',
      format: 'esm',
      packages: 'external',
      logLevel: 'silent',
      absWorkingDir: cwd,
    });
    const files = new Set<string>([module]);
    for (const f of Object.keys(r.metafile.inputs)) {
      const abs = isAbsolute(f) ? f : resolve(cwd, f);
      if (!abs.includes(`${sep}node_modules${sep}`)) files.add(abs);
    }
    return { files: [...files].sort(), problems: [] };
  } catch (e) {
    const errors = (e as { errors?: Message[] }).errors;
    return { files: [module], problems: Array.isArray(errors) && errors.length > 0 ? errors.map((m) => problem(m, cwd)) : [{ message: (e as Error).message }] };
  }
}

/** A digest of the graph's sources: changes whenever any of them does (missing files count as empty). */
export function graphDigest(files: readonly string[]): string {
  const h = createHash('sha256');
  for (const f of files) {
    h.update(f).update('\0');
    try {
      h.update(readFileSync(f));
    } catch {
      h.update('<missing>');
    }
    h.update('\0');
  }
  return h.digest('hex').slice(0, 16);
}
