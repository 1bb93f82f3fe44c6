/**
 * How sluice starts its own child processes (workers, the handler sandbox, `sluice invoke`): with the
 * TypeScript loader resolved from sluice's own install, never from the user's working directory. A
 * bare `node --import tsx` resolves `tsx` against the cwd, so a project that depends on sluice (and
 * not on tsx) could not start a single worker.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);

/** file:// URL of tsx's ESM loader in sluice's install (for `node --import`). */
export const tsxLoaderUrl: string = pathToFileURL(require.resolve('tsx')).href;

/** Node arguments that run the TypeScript file `entry` with sluice's loader, then `args`. */
export function nodeArgs(entry: string, ...args: string[]): string[] {
  return ['--import', tsxLoaderUrl, entry, ...args];
}
