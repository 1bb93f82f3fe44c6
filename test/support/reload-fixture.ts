/**
 * The live-reload project of test/process/dev-reload.test.ts and test/bench/reload.ts: function
 * `tagger` on bucket `uploads` (8 shards) whose handler imports `lib/tag.ts` from OUTSIDE its folder
 * and tags each record with that module's TAG (and adds 1 to attribute n, so a record handled twice
 * shows). `measureReload` edits TAG and times the edit → the first record handled by the new code.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LocalBackend } from '../../bindings/local/index.ts';
import type { ObjectBinding } from '../../bindings/types.ts';
import { repoRoot } from './sluice-process.ts';

/** Paths of the project under `work`. */
export function reloadProject(work: string): { data: string; functions: string; handler: string; lib: string } {
  return { data: join(work, 'data'), functions: join(work, 'functions'), handler: join(work, 'functions', 'tagger', 'index.ts'), lib: join(work, 'lib', 'tag.ts') };
}

/** The handler's source; `suffix` is appended to the tag (an edit of the handler itself). */
export const handlerSource = (suffix: string) => `import { defineFunction } from '${join(repoRoot, 'functions/types.ts')}';
import { TAG } from '../../lib/tag.ts';

export default defineFunction({
  async handler(records, ctx) {
    for (const r of records) {
      r.setAttrs({ tag: TAG + '${suffix}' });
      r.update({ expr: 'ADD n :one', values: { ':one': 1 } });
      ctx.count('seen');
    }
  },
});
`;

/** Writes the project (TAG 'v1') and creates bucket `uploads` with 8 shards; returns the open backend. */
export async function writeReloadProject(work: string): Promise<{ backend: LocalBackend; objects: ObjectBinding }> {
  const p = reloadProject(work);
  writeFileSync(join(work, 'package.json'), '{"type":"module"}\n');
  mkdirSync(join(p.functions, 'tagger'), { recursive: true });
  mkdirSync(join(work, 'lib'), { recursive: true });
  writeFileSync(p.lib, "export const TAG = 'v1';\n");
  writeFileSync(p.handler, handlerSource(''));
  writeFileSync(
    join(p.functions, 'tagger', 'function.yaml'),
    ['apiVersion: sluice.dev/v1', 'kind: Function', 'metadata:', '  name: tagger', 'spec:', '  handler: index.ts', '  triggers:', '    - object:', '        bucket: uploads', '  batch: {maxWait: 5ms}', '  scaling: {minReplicas: 1, maxReplicas: 1}', ''].join('\n'),
  );
  const backend = await LocalBackend.open({ dir: p.data });
  await backend.createBucket('uploads', { shards: 8 });
  return { backend, objects: await backend.objects('uploads') };
}

/** Puts `key` and returns it; the bucket's change stream feeds the function. */
export async function put(b: ObjectBinding, key: string): Promise<string> {
  await b.put(key, new TextEncoder().encode(key));
  return key;
}

export async function tagOf(b: ObjectBinding, key: string): Promise<{ tag?: unknown; n?: unknown }> {
  return (await b.getAttrs(key)).attrs as { tag?: unknown; n?: unknown };
}

/**
 * Sets TAG to `tag`, then puts a record every 50 ms (named `<prefix>-<i>`, pushed to `keys`) until one
 * comes back tagged `tag`; returns the ms from the edit to then. Throws past `timeoutMs`.
 */
export async function measureReload(o: { objects: ObjectBinding; lib: string; tag: string; keys: string[]; prefix: string; timeoutMs?: number; context?: () => string }): Promise<number> {
  const t0 = Date.now();
  writeFileSync(o.lib, `export const TAG = '${o.tag}';\n`);
  for (let i = 0; ; i++) {
    if (Date.now() - t0 > (o.timeoutMs ?? 45_000)) throw new Error(`no record handled by the new code ${o.timeoutMs ?? 45_000} ms after the edit; ${o.context?.() ?? ''}`);
    o.keys.push(await put(o.objects, `${o.prefix}-${i}`));
    for (const k of o.keys.slice(-40)) if ((await tagOf(o.objects, k)).tag === o.tag) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, 50));
  }
}
