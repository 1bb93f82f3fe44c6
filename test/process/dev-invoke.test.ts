/**
 * `sluice invoke`, end to end with real processes against one `sluice dev`: it runs the handler in a
 * process of its own with the function's real bindings (or a scratch store with --dry-run), a fresh
 * module each time, and exits non-zero with the code when the handler fails, spins past its timeout
 * or calls process.exit — while the platform keeps working. The invocations run concurrently.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalBackend } from '../../bindings/local/index.ts';
import { ExitCodes } from '../../controller/cli/context.ts';
import { repoRoot, run, startDev, until, type Dev } from '../support/sluice-process.ts';

const work = mkdtempSync(join(tmpdir(), 'sluice-invoke-'));
const data = join(work, 'data');
const fixture = (f: string) => fileURLToPath(new URL(`../fixtures/functions/${f}`, import.meta.url));
const types = join(repoRoot, 'functions/types.ts');
let dev: Dev;

function spec(name: string, handler: string, extra = ''): string {
  const f = join(work, `${name}.yaml`);
  writeFileSync(f, ['apiVersion: sluice.dev/v1', 'kind: Function', 'metadata:', `  name: ${name}`, 'spec:', `  handler: ${handler}`, '  triggers:', '    - object:', '        bucket: uploads', '  batch: {maxWait: 5ms}', extra, ''].join('\n'));
  return f;
}

const sluice = (args: string[], timeoutMs = 90_000) => run(['--data', data, '--server', dev.server, ...args], { timeoutMs });

beforeAll(async () => {
  writeFileSync(join(work, 'package.json'), '{"type":"module"}\n');
  mkdirSync(join(work, 'src'));
  const b = await LocalBackend.open({ dir: data });
  await b.createBucket('uploads', { shards: 2 });
  await b.createTable('notes');
  await b.close();
  // No functions folder: every function here is deployed through the CLI.
  dev = await startDev({ data, cwd: work, extra: ['--functions', join(work, 'none')] });
}, 180_000);

afterAll(async () => {
  await dev?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe('dev invoke', () => {
  it('invoke - own process, real bindings or --dry-run, fresh module, exit codes for failure, timeout and process.exit; the platform is unharmed', async () => {
    const [d, d2] = await Promise.all([
      sluice(['deploy', '-f', spec('inv', fixture('dev-invoke.ts'), '  timeout: 2s\n  bindings:\n    - {name: notes, kind: kv, resource: notes, access: read-write}')]),
      sluice(['deploy', '-f', spec('counter', fixture('rt-count.ts'))]),
    ]);
    expect(d.code, d.stderr).toBe(ExitCodes.ok);
    expect(d2.code, d2.stderr).toBe(ExitCodes.ok);

    const invoke = (key: string, ...extra: string[]) => sluice(['invoke', 'inv', '--key', key, '--data', `body-${key}`, ...extra]);
    const [one, two, dry, fail, spin, exit] = await Promise.all([
      invoke('one', '--json'),
      invoke('two', '--json'),
      invoke('dry', '--dry-run', '--json'),
      invoke('fail'),
      invoke('spin'),
      invoke('exit'),
    ]);
    // Real bindings: the handler's write reaches the platform's table; a fresh module each time (calls = 1).
    for (const [key, r] of [['one', one], ['two', two], ['dry', dry]] as const) {
      expect(r!.code, r!.stderr).toBe(ExitCodes.ok);
      const out = JSON.parse(r!.stdout) as { records: { set: Record<string, unknown> }[]; counters: Record<string, number>; logs: { msg: string }[]; output: string[]; error: unknown };
      expect(out.error).toBeNull();
      expect(out.records[0]!.set).toEqual({ calls: 1 });
      expect(out.counters).toEqual({ invoked: 1 });
      expect(out.output).toContain(`printed ${key}`);
      expect(out.logs.map((l) => l.msg)).toContain('logged');
    }
    const [itemOne, itemTwo, itemDry] = await Promise.all(['one', 'two', 'dry'].map((k) => sluice(['kv', 'get', 'notes', k, '--json'])));
    expect(JSON.parse(itemOne!.stdout)).toMatchObject({ item: { v: 'body-one' } });
    expect(JSON.parse(itemTwo!.stdout)).toMatchObject({ item: { v: 'body-two' } });
    // --dry-run: the same effects printed, nothing written on the platform.
    expect(itemDry!.code).toBe(ExitCodes.notFound);

    expect(fail!.code).toBe(ExitCodes.failed);
    expect(fail!.stderr).toMatch(/handler says no.*\(SLUICE_HANDLER_FAILED\)/);
    expect(spin!.code).toBe(ExitCodes.failed);
    expect(spin!.stderr).toMatch(/timeout of 2000 ms.*\(SLUICE_HANDLER_TIMEOUT\)/);
    expect(spin!.ms).toBeLessThan(60_000);
    expect(exit!.code).toBe(ExitCodes.failed);
    expect(exit!.stderr).toMatch(/ended its process \(exit code 9\).*\(SLUICE_HANDLER_FAILED\)/);

    // The platform is unharmed: the control API answers and the other function still handles uploads.
    const b = await LocalBackend.open({ dir: data });
    try {
      const objects = await b.objects('uploads');
      await objects.put('after-invokes', new TextEncoder().encode('x'));
      await until('counter handles an upload after the invokes', async () => ((await objects.getAttrs('after-invokes')).attrs.n === 1 ? true : undefined));
    } finally {
      await b.close();
    }
    const ls = await sluice(['ls', '--json']);
    expect((JSON.parse(ls.stdout) as { name: string }[]).map((f) => f.name)).toEqual(['counter', 'inv']);
  }, 300_000);
});
