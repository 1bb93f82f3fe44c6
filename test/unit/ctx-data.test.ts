/**
 * `ctx.data` is the declared bindings and nothing else (DESIGN invariant 5), on handler threads and on
 * the main-thread runner alike: an undeclared name is SLUICE_ACCESS_DENIED naming it (not a TypeError
 * later), and neither the entries nor ctx.data itself can be replaced.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { LocalBackend } from '../../bindings/local/index.ts';
import type { Backend } from '../../bindings/types.ts';
import type { BatchInput } from '../../runtime/batch-types.ts';
import { InlineRunner } from '../../runtime/runner.ts';
import { HandlerPool } from '../../runtime/threads/handler-pool.ts';
import { resolveWorkerOptions } from '../../runtime/worker-options.ts';

const module = fileURLToPath(new URL('../fixtures/functions/data-guard.ts', import.meta.url));
const bindings = [{ name: 'photos', kind: 'object' as const, resource: 'photos', access: 'read' as const }];
let dir: string;
let backend: Backend;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-ctxdata-'));
  backend = await LocalBackend.open({ dir });
  await backend.createBucket('photos');
  await backend.createBucket('secrets');
});
afterAll(async () => {
  await backend.close();
  rmSync(dir, { recursive: true, force: true });
});

function batch(): BatchInput {
  const r = { key: 'k', type: 'put' as const, source: 'photos', shard: 0, seq: 1, version: 1, size: 0, etag: '0'.repeat(32), mtimeMs: 1, contentType: 'text/plain', attrs: {}, headers: {}, attempt: 1 };
  return { function: 'data-guard', source: 'photos', shard: 0, batchId: 'b1', deadlineMs: Date.now() + 10_000, records: [r] };
}

const expected = {
  frozen: true,
  undeclared: "SLUICE_ACCESS_DENIED: ctx.data.secrets: no binding 'secrets' is declared in the function's spec (declared: photos)",
  hasUndeclared: false,
  keys: ['photos'],
  add: 'SLUICE_ACCESS_DENIED',
  replace: 'SLUICE_ACCESS_DENIED',
  remove: 'SLUICE_ACCESS_DENIED',
  swapData: 'TypeError',
  stillOwn: true,
  awaitable: 'ok',
  json: 'allowed',
};

it('bindings/guard - handler thread: undeclared ctx.data names are SLUICE_ACCESS_DENIED, ctx.data is frozen and cannot be replaced', async () => {
  const pool = await HandlerPool.open({ module, function: 'data-guard', backend: { kind: 'local', dir }, logLevel: 'silent', bindings });
  try {
    const fx = await pool.run(batch());
    expect(fx.error).toBeUndefined();
    expect(fx.records[0]!.set).toEqual(expected);
  } finally {
    await pool.close({ graceMs: 1000 });
  }
});

it('bindings/guard - main-thread runner: the same rules', async () => {
  const o = resolveWorkerOptions({ function: 'data-guard', module, trigger: { type: 'object', bucket: 'photos' }, backend: { kind: 'local', dir }, threads: 0, bindings }, 'test');
  const runner = await InlineRunner.open(o, backend, pino({ level: 'silent' }));
  try {
    const fx = await runner.run(batch());
    expect(fx.error).toBeUndefined();
    expect(fx.records[0]!.set).toEqual(expected);
  } finally {
    await runner.close();
  }
});
