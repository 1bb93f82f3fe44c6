/**
 * `sluice dlq ls|redrive`: a function's dead letters, and putting them back on its trigger path. The same
 * code as the console's dead-letter page (controller/redrive.ts), over the data backend: a letter is
 * redriven once (a second redrive of it is `already`, unless `--again`), so a redriven record's effect
 * lands once however often the command is run.
 */
import type { Command } from 'commander';
import { SluiceError } from '../../../bindings/errors.ts';
import { readDeadLetters, redrive, type DeadLetterView, type RedriveResult } from '../../redrive.ts';
import { collect, intArg, out, withBackend, type GlobalOptions } from '../context.ts';

/** Most letters `ls` and `redrive --all` read. */
const MAX_LETTERS = 10_000;

/** `<shard>/<seq>` → [shard, seq]; a malformed id is bad usage (exit 2). */
function parseId(id: string): [number, number] {
  const m = /^(\d+)\/(\d+)$/.exec(id);
  if (!m) throw new SluiceError('SLUICE_INVALID_ARGUMENT', `--id '${id}' is not <shard>/<seq> (as 'sluice dlq ls' prints it)`);
  return [Number(m[1]), Number(m[2])];
}

function line(l: DeadLetterView): string {
  const d = l.letter as { key?: string; attempts?: number; error?: { code?: string; message?: string } };
  const mark = l.redriven ? `  [redriven ${l.redriven.outcome.status} ${l.redriven.at}]` : '';
  return `${l.shard}/${l.seq}  ${l.time}  ${d.key ?? ''}  attempts ${d.attempts ?? '?'}  ${d.error?.code ?? ''}: ${d.error?.message ?? ''}${mark}`;
}

function describe(id: string, r: RedriveResult): string {
  switch (r.status) {
    case 'reput':
      return `${id}: object '${r.key}' put again in bucket '${r.bucket}' (version ${r.version})`;
    case 'requeued':
      return `${id}: record appended again to stream '${r.stream}' (shard ${r.shard}, seq ${r.seq})`;
    case 'gone':
      return `${id}: nothing to redrive: ${r.reason}`;
    case 'already':
      return `${id}: already redriven at ${r.at} (${r.previous.status}); --again redrives it once more`;
  }
}

export function register(program: Command, g: () => GlobalOptions): void {
  const dlq = program.command('dlq').description("a function's dead letters: ls, redrive");
  dlq
    .command('ls')
    .description('list dead letters, newest first, with their error and whether they were redriven')
    .argument('<function>')
    .option('--limit <n>', 'most letters', intArg(1), 100)
    .option('--stream <name>', "the dead-letter stream (default dlq-<function>; set when the spec's retries.deadLetter.stream differs)")
    .action(async (fn: string, o: { limit: number; stream?: string }) => {
      await withBackend(g(), async (b) => {
        const { openStateTable } = await import('../../../runtime/index.ts');
        const r = await readDeadLetters(b, await openStateTable(b), fn, Math.min(o.limit, MAX_LETTERS), o.stream);
        out(g(), r, () => (r.letters.length === 0 ? `no dead letters in '${r.stream}'` : [`${r.total} dead letters in '${r.stream}'`, ...r.letters.map(line)].join('\n')));
      });
    });
  dlq
    .command('redrive')
    .description('put dead letters back on the trigger path: each runs again once (an object is put again in place; a stream record is appended again)')
    .argument('<function>')
    .option('--id <shard/seq>', 'a letter to redrive, as `dlq ls` prints it (repeatable)', collect, [])
    .option('--all', 'every letter not redriven yet')
    .option('--again', 'also redrive letters that were redriven before (their records run once more)')
    .option('--stream <name>', 'the dead-letter stream (default dlq-<function>)')
    .action(async (fn: string, o: { id: string[]; all?: boolean; again?: boolean; stream?: string }) => {
      if ((o.id.length === 0) === !o.all) throw Object.assign(new Error('give --id <shard/seq> (repeatable) or --all'), { code: 'commander.usage' });
      const ids = o.id.map(parseId);
      await withBackend(g(), async (b) => {
        const { openStateTable } = await import('../../../runtime/index.ts');
        const state = await openStateTable(b);
        let targets = ids;
        if (o.all) {
          const r = await readDeadLetters(b, state, fn, MAX_LETTERS, o.stream);
          // Oldest first, so records of one key run again in the order they failed.
          targets = r.letters
            .filter((l) => o.again || !l.redriven)
            .reverse()
            .map((l) => [l.shard, l.seq]);
        }
        const results: { id: string; result: RedriveResult }[] = [];
        for (const [shard, seq] of targets) {
          const result = await redrive(b, state, fn, shard, seq, { ...(o.again ? { again: true } : {}), ...(o.stream !== undefined ? { stream: o.stream } : {}) });
          results.push({ id: `${shard}/${seq}`, result });
        }
        out(g(), { function: fn, redriven: results }, () => (results.length === 0 ? 'nothing to redrive' : results.map((x) => describe(x.id, x.result)).join('\n')));
      });
    });
}
