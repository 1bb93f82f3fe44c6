/**
 * `sluice dlq ls|redrive` end to end, on both backends: a real worker dead-letters a record whose handler
 * fails while a flag is off, the CLI (a real child process) lists it, the flag flips, the CLI redrives it
 * and its effect lands exactly once; a second redrive (by id or --all) does nothing. Plus `--json` and
 * the documented exit codes.
 */
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { expect, it } from 'vitest';
import { ExitCodes } from '../../controller/cli/context.ts';
import { openStateTable, readCounters } from '../../runtime/state.ts';
import { Worker } from '../../runtime/worker.ts';
import { forEachBackend, tn } from '../conformance/backends.ts';
import { run, until } from '../support/sluice-process.ts';

const touch = fileURLToPath(new URL('../fixtures/functions/chain-touch.ts', import.meta.url));
const quiet = pino({ level: process.env.SLUICE_TEST_LOG ?? 'silent' });

forEachBackend('cli', (ctx) => {
  it(
    tn('cli', ctx, 'dlq: ls lists a dead letter, redrive runs it again once after the fix, a second redrive is a no-op'),
    async () => {
      const spec = ctx.childSpec();
      const data = spec.kind === 'local' ? spec.dir : spec.url;
      const bucket = ctx.uid('dq');
      const table = ctx.uid('flags');
      const fn = ctx.uid('fn');
      await ctx.backend.createBucket(bucket, { shards: 1 });
      await ctx.backend.createTable(table);
      const o = await ctx.backend.objects(bucket);
      const w = await Worker.start(
        {
          function: fn,
          module: touch,
          trigger: { type: 'object', bucket },
          backend: spec,
          threads: 0,
          batch: { maxRecords: 10, maxWait: '5ms' },
          retries: { maxAttempts: 2, initialBackoff: '20ms', maxBackoff: '50ms' },
          bindings: [{ name: 'flags', kind: 'kv', resource: table, access: 'read' }],
          leaseTtl: '2s',
        },
        { log: quiet },
      );
      try {
        await o.put('gate-1', 'x');
        await o.put('fine', 'x');
        const cli = (...args: string[]) => run(['--data', data, ...args]);
        type Ls = { total: number; letters: { shard: number; seq: number; letter: { key: string; attempts: number; error: { code: string; message: string } }; redriven?: { outcome: { status: string } } }[] };
        const ls = await until('the dead letter listed', async () => {
          const r = await cli('dlq', 'ls', fn, '--json');
          expect(r.code, r.stderr).toBe(0);
          const v = JSON.parse(r.stdout) as Ls;
          return v.total >= 1 ? v : undefined;
        });
        expect(ls.letters).toHaveLength(1);
        const l = ls.letters[0]!;
        expect([l.letter.key, l.letter.attempts, l.letter.error.message]).toEqual(['gate-1', 2, `gate closed for gate-1`]);
        const id = `${l.shard}/${l.seq}`;
        // The fix: open the gate, then redrive.
        await (await ctx.backend.kv(table)).putItem(`gate/gate-1`, { open: true });
        const r1 = await cli('dlq', 'redrive', fn, '--id', id, '--json');
        expect(r1.code, r1.stderr).toBe(0);
        expect(JSON.parse(r1.stdout)).toMatchObject({ function: fn, redriven: [{ id, result: { status: 'reput', bucket, key: 'gate-1' } }] });
        await until('the redriven record ran', async () => ((await o.getAttrs('gate-1')).attrs[`runs_${fn}`] === 1 ? true : undefined));

        // Redriving again does nothing, by id or with --all; the effect stays applied once.
        const [r2, r3, listed] = await Promise.all([cli('dlq', 'redrive', fn, '--id', id, '--json'), cli('dlq', 'redrive', fn, '--all'), cli('dlq', 'ls', fn, '--json')]);
        expect(r2.code, r2.stderr).toBe(0);
        expect(JSON.parse(r2.stdout)).toMatchObject({ redriven: [{ id, result: { status: 'already', previous: { status: 'reput' } } }] });
        expect([r3.code, r3.stdout.trim()]).toEqual([0, 'nothing to redrive']);
        expect((JSON.parse(listed.stdout) as Ls).letters[0]?.redriven?.outcome.status).toBe('reput');
        await new Promise((r) => setTimeout(r, 1000));
        expect((await o.getAttrs('gate-1')).attrs[`runs_${fn}`]).toBe(1);
        expect((await readCounters(await openStateTable(ctx.backend), fn, 1)).runs).toBe(2);

        // Exit codes: usage, unknown letter, malformed id.
        const [noId, unknown, badId, text, none] = await Promise.all([
          cli('dlq', 'redrive', fn),
          cli('dlq', 'redrive', fn, '--id', '0/99999', '--json'),
          cli('dlq', 'redrive', fn, '--id', 'seven'),
          cli('dlq', 'ls', fn),
          cli('dlq', 'ls', 'nobody-here'),
        ]);
        expect(noId.code, noId.stderr).toBe(ExitCodes.usage);
        expect(unknown.code, unknown.stderr).toBe(ExitCodes.notFound);
        expect(JSON.parse(unknown.stderr)).toMatchObject({ error: { code: 'SLUICE_NOT_FOUND' } });
        expect(badId.code, badId.stderr).toBe(ExitCodes.invalid);
        expect(badId.stderr).toContain('<shard>/<seq>');
        // The text listing; a function without dead letters.
        expect(text.stdout).toContain(`${id}  `);
        expect(text.stdout).toMatch(/gate closed for gate-1 {2}\[redriven reput /);
        expect([none.code, none.stdout.trim()]).toEqual([0, "no dead letters in 'dlq-nobody-here'"]);
      } finally {
        await w.stop();
      }
    },
    240_000,
  );
});
