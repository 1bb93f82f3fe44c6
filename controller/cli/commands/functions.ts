/** `sluice deploy|rm|ls|status|logs|invoke|scale`: functions, through the control API. */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { isErrorCode, SluiceError, type SerializedError } from '../../../bindings/errors.ts';
import type { ControlClient } from '../../grpc/client.ts';
import { collect, controlTarget, intArg, out, parseValue, type GlobalOptions } from '../context.ts';

/** What `invoke` returns over the control API (runtime/invoke-child.ts `InvokeChildResult`, as JSON). */
interface InvokeOutput {
  records?: { key: string; failure?: { error: SerializedError } }[];
  counters?: Record<string, number>;
  logs?: object[];
  output?: string[];
  error?: { error: SerializedError } | null;
  durationMs?: number;
}

async function withClient<T>(g: GlobalOptions, fn: (c: ControlClient) => Promise<T>): Promise<T> {
  const { address, token } = controlTarget(g);
  // Loaded on use, like every heavy module of the CLI: `sluice --help` and the data commands start faster.
  const { ControlClient } = await import('../../grpc/client.ts');
  const c = await ControlClient.connect(address, token, { connectTimeoutMs: 3000 });
  try {
    return await fn(c);
  } finally {
    c.close();
  }
}

export function register(program: Command, g: () => GlobalOptions): void {
  program
    .command('deploy')
    .description('deploy (or update) a function from its spec file')
    .requiredOption('-f, --file <spec.yaml>', 'function spec')
    .action(async (o: { file: string }) => {
      let yaml: string;
      try {
        yaml = readFileSync(o.file, 'utf8');
      } catch (cause) {
        if ((cause as { code?: unknown }).code === 'ENOENT') throw new SluiceError('SLUICE_FILE_NOT_FOUND', `function spec ${o.file} does not exist`, { cause });
        throw new SluiceError('SLUICE_INVALID_ARGUMENT', `cannot read spec file ${o.file}: ${(cause as Error).message}`, { cause });
      }
      const [{ loadFunctionSpec }, { specDirOf }] = await Promise.all([import('../../spec/index.ts'), import('../../controller.ts')]);
      // Validate here first: the messages then name this file (the server only sees the text).
      loadFunctionSpec(yaml, o.file);
      const r = await withClient(g(), (c) => c.deploy(yaml, specDirOf(o.file)));
      out(g(), r, () => `deployed ${r.name} (revision ${r.revision})`);
    });
  program
    .command('rm')
    .description('remove a function and stop its workers')
    .argument('<name>')
    .action(async (name: string) => {
      const removed = await withClient(g(), (c) => c.remove(name));
      if (!removed) throw new SluiceError('SLUICE_NOT_FOUND', `function '${name}' is not deployed`);
      out(g(), { removed }, () => `removed ${name}`);
    });
  program
    .command('ls')
    .description('list deployed functions')
    .action(async () => {
      const l = await withClient(g(), (c) => c.list());
      out(g(), l, () => (l.length ? ['NAME                 REVISION  REPLICAS', ...l.map((f) => `${f.name.padEnd(20)} ${String(f.revision).padStart(8)}  ${String(f.replicas).padStart(8)}`)].join('\n') : '(no functions)'));
    });
  program
    .command('status')
    .description('replicas, shards (owner, lag), rate, counters and errors of a function')
    .argument('<name>')
    .action(async (name: string) => {
      const s = await withClient(g(), (c) => c.status(name));
      out(g(), s, () =>
        [
          `${s.name} revision ${s.revision}: ${s.replicas.ready}/${s.replicas.desired} replicas ready, lag ${s.lag}, ${s.ratePerSecond}/s, ${s.deadLetters} dead letters`,
          `counters: ${Object.entries(s.counters).map(([k, v]) => `${k}=${v}`).join(' ') || '(none)'}`,
          `restarts ${s.restarts}${s.lastError ? `; last error ${s.lastError.at}: ${s.lastError.message}` : ''}`,
          'SHARD  OWNER                          EPOCH      LAG  PENDING',
          ...s.shards.map((x) => `${String(x.shard).padStart(5)}  ${(x.owner || '-').padEnd(30)} ${String(x.epoch).padStart(5)} ${String(x.lag).padStart(8)} ${String(x.pending).padStart(8)}`),
          ...(s.queryRuns && s.queryRuns.length > 0
            ? ['RUN                        STARTED                    FINISHED                   MATCHED  PROCESSED  FAILED', ...s.queryRuns.slice(0, 10).map((r) => `${r.id.padEnd(26)} ${r.startedAt.padEnd(26)} ${(r.finishedAt ?? '(running)').padEnd(26)} ${String(r.matched).padStart(7)} ${String(r.processed).padStart(10)} ${String(r.failed).padStart(7)}`)]
            : []),
          ...s.errors.slice(0, 5).map((e) => `error ${e.at}: ${e.message}`),
        ].join('\n'),
      );
    });
  program
    .command('scale')
    .description('pin the replica count of a function (within its scaling range)')
    .argument('<name>')
    .argument('<replicas>', 'replica count', intArg(0))
    .action(async (name: string, replicas: number) => {
      await withClient(g(), (c) => c.scale(name, replicas));
      out(g(), { name, replicas }, () => `scaled ${name} to ${replicas}`);
    });
  program
    .command('invoke')
    .description("run a function's handler once, in a process of its own, on a synthetic object event with the function's bindings and timeout; prints effects, logs and result; exits non-zero when the handler fails or times out")
    .argument('<name>')
    .option('--key <key>', 'object key of the event', 'invoke/test')
    .option('--data <text>', 'object body', '')
    .option('--attr <name=value>', 'attribute of the object (repeatable)', collect, [])
    .option('--dry-run', "bindings on a scratch in-memory store instead of the platform's: nothing changes anywhere")
    .action(async (name: string, o: { key: string; data: string; attr: string[]; dryRun?: boolean }) => {
      const attrs = Object.fromEntries(o.attr.map((a) => [a.slice(0, a.indexOf('=')), parseValue(a.slice(a.indexOf('=') + 1))]));
      const r = (await withClient(g(), (c) => c.invoke(name, { key: o.key, body: Buffer.from(o.data), attrs, dryRun: o.dryRun === true }))) as InvokeOutput;
      const result = { records: r.records ?? [], counters: r.counters ?? {}, logs: r.logs ?? [], output: r.output ?? [], error: r.error ?? null, durationMs: r.durationMs ?? 0 };
      out(g(), result, () => JSON.stringify(result, null, 2));
      // The handler's failure is the command's: scripts and CI see a non-zero exit with the code.
      if (result.error) {
        const code = isErrorCode(result.error.error.code) && result.error.error.code === 'SLUICE_HANDLER_TIMEOUT' ? 'SLUICE_HANDLER_TIMEOUT' : 'SLUICE_HANDLER_FAILED';
        throw new SluiceError(code, `handler of '${name}' failed: ${result.error.error.message}${result.error.error.code !== code ? ` [${result.error.error.code}]` : ''}`);
      }
      const failed = result.records.find((x) => x.failure !== undefined);
      if (failed) throw new SluiceError('SLUICE_HANDLER_FAILED', `handler of '${name}' failed record '${failed.key}': ${failed.failure!.error.message}`);
    });
  program
    .command('logs')
    .description("a function's worker logs")
    .argument('<name>')
    .option('-f, --follow', 'keep printing new lines')
    .action(async (name: string, o: { follow?: boolean }) => {
      const ac = new AbortController();
      process.once('SIGINT', () => ac.abort());
      await withClient(g(), async (c) => {
        for await (const l of c.logs(name, { follow: o.follow === true, signal: ac.signal }))
          out(g(), l, () => `${l.at} [${l.ordinal}] ${l.level.padEnd(5)} ${l.message}${Object.keys(l.fields).length ? ` ${JSON.stringify(l.fields)}` : ''}`);
      });
    });
}
