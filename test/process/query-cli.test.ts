/**
 * `sluice query` and `sluice kv query` (SQL form) end to end: each command a real child process of the
 * CLI against a store the test seeds, on both backends (`--data <dir>` and `--data nats://…`), checking
 * the table, `--json` rows, `--explain`, and the exit codes of malformed SQL and unknown buckets.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { ExitCodes } from '../../controller/cli/context.ts';
import { forEachBackend, tn } from '../conformance/backends.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const sluiceBin = join(root, 'controller/cli/sluice.mjs');

function run(data: string, args: string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  for (const k of Object.keys(env)) if (k.startsWith('SLUICE_')) delete env[k];
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [sluiceBin, '--data', data, ...args], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const t = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`sluice ${args.join(' ')} timed out; stderr: ${stderr}`));
    }, timeoutMs);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

forEachBackend('cli', (ctx) => {
  it(
    tn('cli', ctx, 'query: SQL over objects as a table, --json rows with key, --explain names the index, typed failures'),
    async () => {
      const spec = ctx.childSpec();
      const data = spec.kind === 'local' ? spec.dir : spec.url;
      const bucket = ctx.uid('cq');
      const mb = await run(data, ['objects', 'mb', bucket, '--shards', '2', '--index', 'has_ssn', '--index', 'mtime']);
      expect(mb.code, mb.stderr).toBe(0);
      expect(mb.stdout).toContain('indexes attr.has_ssn, mtime');
      const o = await ctx.backend.objects(bucket);
      for (let i = 0; i < 12; i++) await o.put(`doc-${String(i).padStart(2, '0')}`, 'x'.repeat(i), { attrs: { has_ssn: i % 4 === 0, n: i } });
      await ctx.backend.createTable(bucket);
      const t = await ctx.backend.kv(bucket);
      for (let i = 0; i < 5; i++) await t.putItem(`i${i}`, { bugs: i * 10, name: `n${i}` });

      const [text, json, explain, sorted, bad, missing, kvSql, kvBad] = await Promise.all([
        run(data, ['query', `SELECT key, size, n FROM ${bucket} WHERE has_ssn = true`]),
        run(data, ['query', '--json', `SELECT key, n FROM ${bucket} WHERE n >= 9 ORDER BY n DESC LIMIT 2`]),
        run(data, ['query', '--explain', '--json', `SELECT * FROM ${bucket} WHERE has_ssn = true AND n > 1`]),
        run(data, ['--json', 'query', `SELECT size FROM ${bucket} WHERE begins_with(key, 'doc-1') ORDER BY size`]),
        run(data, ['query', `SELECT * FROM ${bucket} WHERE n = = 1`]),
        run(data, ['query', 'SELECT * FROM no-such-bucket']),
        run(data, ['--json', 'kv', 'query', bucket, `SELECT name FROM ${bucket} WHERE bugs >= 20 ORDER BY bugs DESC LIMIT 2`]),
        run(data, ['kv', 'query', bucket, 'SELECT * FROM other-table']),
      ]);
      expect(text.code, text.stderr).toBe(0);
      expect(text.stdout.split('\n')[0]).toMatch(/^key\s+size\s+n$/);
      expect(text.stdout).toMatch(/doc-04\s+4\s+4/);
      expect(text.stdout).toContain('(3 rows)');
      expect(json.code, json.stderr).toBe(0);
      expect(JSON.parse(json.stdout)).toEqual([
        { key: 'doc-11', n: 11 },
        { key: 'doc-10', n: 10 },
      ]);
      expect(explain.code, explain.stderr).toBe(0);
      expect(JSON.parse(explain.stdout)).toMatchObject({ kind: 'index', index: 'attr.has_ssn' });
      expect(JSON.parse(sorted.stdout)).toEqual([
        { key: 'doc-10', size: 10 },
        { key: 'doc-11', size: 11 },
      ]);
      expect(bad.code).toBe(ExitCodes.invalid);
      expect(bad.stderr).toMatch(/SLUICE_EXPRESSION_SYNTAX/);
      expect(bad.stderr).toMatch(/line 1, column \d+/);
      expect(bad.stderr).toContain('^');
      expect(missing.code).toBe(ExitCodes.notFound);
      expect(missing.stderr).toMatch(/SLUICE_BUCKET_NOT_FOUND/);
      expect(kvSql.code, kvSql.stderr).toBe(0);
      expect(JSON.parse(kvSql.stdout)).toEqual([
        { key: 'i4', item: { name: 'n4' }, revision: expect.any(Number) },
        { key: 'i3', item: { name: 'n3' }, revision: expect.any(Number) },
      ]);
      expect(kvBad.code).toBe(ExitCodes.invalid);
    },
    180_000,
  );
});
