/**
 * Load errors, end to end with real processes against one `sluice dev`:
 * - `sluice deploy` of a handler that does not load (syntax error, missing import, `export default 42`,
 *   a throw at import) is refused with SLUICE_HANDLER_LOAD (exit 4), the real message, file:line:column
 *   and stack; a binding to a missing table with SLUICE_BINDING_MISSING (exit 3); nothing is deployed;
 * - a function whose `init` throws crash-loops, and `sluice status` shows its last error and restarts.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalBackend } from '../../bindings/local/index.ts';
import { ExitCodes } from '../../controller/cli/context.ts';
import type { FunctionStatus } from '../../controller/control-plane.ts';
import { repoRoot, run, startDev, until, type Dev } from '../support/sluice-process.ts';

const work = mkdtempSync(join(tmpdir(), 'sluice-errors-'));
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

describe('dev errors', () => {
  it('load errors - deploy refuses handlers that do not load, with the real error and where it is; nothing is deployed', async () => {
    const src = (name: string, text: string) => {
      const f = join(work, 'src', name);
      writeFileSync(f, text);
      return f;
    };
    const cases = [
      { name: 'syntax', file: src('syntax.ts', `import { defineFunction } from '${types}';\nexport default defineFunction({\n  async handler(records) {\n    for (const r of records {\n  },\n});\n`), at: /syntax\.ts:4:\d+/, says: /Expected/ },
      { name: 'missing', file: src('missing.ts', `import { defineFunction } from '${types}';\nimport { helper } from './not-there.ts';\nexport default defineFunction({ handler: helper });\n`), at: /missing\.ts:2:\d+/, says: /not-there/ },
      { name: 'number', file: src('number.ts', `const answer = 42;\nexport default answer;\n`), at: /number\.ts:2:1/, says: /type number/ },
      { name: 'throws', file: src('throws.ts', `import { defineFunction } from '${types}';\nconst cfg = JSON.parse('{broken');\nexport default defineFunction({ async handler() { void cfg; } });\n`), at: /throws\.ts:2:\d+/, says: /JSON/ },
    ];
    const runs = await Promise.all(cases.map((c) => sluice(['deploy', '-f', spec(c.name, c.file)])));
    for (const [i, c] of cases.entries()) {
      const r = runs[i]!;
      expect(r.code, `${c.name}: ${r.stderr}`).toBe(ExitCodes.invalid);
      expect(r.stderr, c.name).toContain('(SLUICE_HANDLER_LOAD)');
      expect(r.stderr, c.name).toMatch(c.at);
      expect(r.stderr, c.name).toMatch(c.says);
      expect(r.stderr, c.name).not.toContain('[object Object]');
    }
    // --json carries the details: message, file, line, column, stack.
    const j = await sluice(['deploy', '-f', join(work, 'throws.yaml'), '--json']);
    expect(j.code).toBe(ExitCodes.invalid);
    const err = (JSON.parse(j.stderr) as { error: { code: string; details: { file: string; line: number; column: number; stack: string } } }).error;
    expect(err.code).toBe('SLUICE_HANDLER_LOAD');
    expect(err.details).toMatchObject({ file: join(work, 'src', 'throws.ts'), line: 2 });
    expect(err.details.stack).toMatch(/SyntaxError/);

    const binding = await sluice(['deploy', '-f', spec('unbound', fixture('rt-count.ts'), '  bindings:\n    - {name: t, kind: kv, resource: no-such-table, access: read}')]);
    expect(binding.code, binding.stderr).toBe(ExitCodes.notFound);
    expect(binding.stderr).toMatch(/binding 't' .*table 'no-such-table'.*\(SLUICE_BINDING_MISSING\)/);

    const ls = await sluice(['ls', '--json']);
    expect(JSON.parse(ls.stdout)).toEqual([]);
  }, 300_000);

  it('crash loop - a function whose init throws shows the last error and restarts in status', async () => {
    const d = await sluice(['deploy', '-f', spec('initfail', fixture('init-fails.ts'))]);
    expect(d.code, d.stderr).toBe(ExitCodes.ok);
    const s = await until(
      'a restart and the init error in status',
      async () => {
        const r = await sluice(['status', 'initfail', '--json']);
        const st = JSON.parse(r.stdout) as FunctionStatus;
        return st.restarts >= 1 && st.lastError ? st : undefined;
      },
      120_000,
      500,
    );
    expect(s.lastError!.message).toContain('init exploded: no license key');
    expect(s.lastError!.message).not.toContain('[object Object]');
    expect(s.replicas.ready).toBe(0);
    const text = await sluice(['status', 'initfail']);
    expect(text.stdout).toMatch(/last error .*init exploded/);
    expect(text.stdout).toMatch(/restarts [1-9]/);
    await sluice(['rm', 'initfail']);
  }, 300_000);

});
