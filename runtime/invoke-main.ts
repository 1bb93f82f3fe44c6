/**
 * The process `sluice invoke` runs a handler in (child of {@link invokeInChild}): a fresh module every
 * time, the function's declared bindings — on the platform's backend, or with `dryRun` on a scratch
 * store in a temporary directory holding empty copies of the declared resources — and the harness of
 * functions/testing.ts collecting the declared effects, counters and logs. The result goes back over
 * the IPC channel; stdout and stderr are the handler's own output.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { serializeError } from '../bindings/errors.ts';
import type { Backend } from '../bindings/types.ts';
import { invokeHandler } from '../functions/testing.ts';
import type { BoundBinding, FunctionDefinition } from '../functions/types.ts';
import type { InvokeChildRequest, InvokeChildResult } from './invoke-child.ts';

// The backends (LMDB, NATS clients) load only when the function declares bindings: most invokes start faster.
const openBackend = async (...a: Parameters<typeof import('./backend-spec.ts').openBackend>) => (await import('./backend-spec.ts')).openBackend(...a);
const bindAll = async (...a: Parameters<typeof import('./threads/bound-bindings.ts').bindAll>) => (await import('./threads/bound-bindings.ts')).bindAll(...a);

async function scratch(req: InvokeChildRequest): Promise<{ backend: Backend; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-invoke-'));
  const backend = await openBackend({ kind: 'local', dir });
  for (const b of req.bindings) {
    if (b.kind === 'object') await backend.createBucket(b.resource, { shards: 1 });
    else if (b.kind === 'kv') await backend.createTable(b.resource);
    else if (b.kind === 'stream') await backend.streams().create(b.resource, { shards: 1 });
  }
  return { backend, dir };
}

async function run(req: InvokeChildRequest): Promise<InvokeChildResult> {
  let backend: Backend | undefined;
  let dir: string | undefined;
  try {
    const mod = (await import(pathToFileURL(req.module).href)) as { default?: FunctionDefinition };
    const def = mod.default;
    if (typeof def !== 'object' || def === null || typeof def.handler !== 'function')
      return { records: [], counters: {}, logs: [], durationMs: 0, error: { error: { name: 'TypeError', code: 'SLUICE_HANDLER_LOAD', message: `${req.module} must export default defineFunction({ handler })` }, nonRetryable: true } };
    let data: Readonly<Record<string, BoundBinding>> = {};
    if (req.bindings.length > 0) {
      if (req.dryRun) ({ backend, dir } = await scratch(req));
      else backend = await openBackend(req.backend);
      data = await bindAll(backend, req.bindings);
    }
    // Loaded and bound: from here the parent's kill timer is the handler's timeout (plus a little).
    process.send!({ started: true });
    const r = await invokeHandler(def, [req.record], { function: req.function, timeoutMs: req.timeoutMs, data, logLevel: 'debug' });
    const { byKey: _byKey, ...plain } = r;
    return plain;
  } finally {
    await backend?.close().catch(() => undefined);
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  }
}

process.once('message', (req: InvokeChildRequest) => {
  run(req).then(
    (r) => process.send!({ ok: true, result: r }, () => process.exit(0)),
    (e: unknown) => process.send!({ ok: false, error: serializeError(e) }, () => process.exit(0)),
  );
});
