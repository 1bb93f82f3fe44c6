/**
 * `sluice`: the command line. A thin entry: global options, one file per command group, and the
 * documented exit codes (context.ts `ExitCodes`).
 *
 * Global options go before or after the command (`sluice --json ls`, `sluice ls --json`). Options are
 * positional: after a command's name, that command's own option of the same name wins — so
 * `sluice invoke fn --data hi` sends the body 'hi', and the data backend is given before the command
 * (`sluice --data ./d invoke fn --data hi`) or through $SLUICE_DATA.
 */
import { Command, CommanderError, Option } from 'commander';
import { ExitCodeMeanings, ExitCodes, exitCodeOf, type GlobalOptions } from './context.ts';
import { register as dev } from './commands/dev.ts';
import { register as dlq } from './commands/dlq.ts';
import { register as functions } from './commands/functions.ts';
import { register as init } from './commands/init.ts';
import { register as kv } from './commands/kv.ts';
import { register as objects } from './commands/objects.ts';
import { register as query } from './commands/query.ts';
import { register as render } from './commands/render.ts';
import { register as stream } from './commands/stream.ts';

const GLOBAL_OPTIONS: readonly [flags: string, description: string][] = [
  ['--json', 'print JSON for scripts'],
  ['--data <dir|nats-url>', 'data backend (default $SLUICE_DATA or ./.sluice-data)'],
  ['--server <host:port>', 'control API (default $SLUICE_SERVER or 127.0.0.1:7070)'],
  ['--token <token>', 'control API token (default $SLUICE_TOKEN or <data>/token)'],
];

const program = new Command('sluice')
  .description('serverless event functions over unified data APIs')
  .addHelpText(
    'after',
    `\nExit codes:\n${Object.entries(ExitCodes)
      .map(([k, v]) => `  ${v}  ${k.padEnd(16)} ${ExitCodeMeanings[k as keyof typeof ExitCodes]}`)
      .join('\n')}`,
  )
  // Before the commands are registered: they inherit these settings.
  .enablePositionalOptions()
  .exitOverride()
  .showHelpAfterError();
for (const [flags, description] of GLOBAL_OPTIONS) program.addOption(new Option(flags, description));

/** Per command, the global options it accepts as its own (attribute names). */
const globalsOf = new Map<Command, string[]>();
/** The command whose action runs (set by the preAction hook). */
let actionCommand: Command | undefined;

/** The global options: the program's, overridden by those given after a command's name. */
const g = (): GlobalOptions => {
  const merged: Record<string, unknown> = { ...program.opts() };
  const chain: Command[] = [];
  for (let c: Command | null = actionCommand ?? null; c && c !== program; c = c.parent) chain.unshift(c);
  for (const c of chain) {
    const local = c.opts();
    for (const k of globalsOf.get(c) ?? []) if (local[k] !== undefined) merged[k] = local[k];
  }
  return merged as GlobalOptions;
};
for (const r of [dev, functions, objects, kv, stream, render, query, init, dlq]) r(program, g);

/** Lets every command take the global options after its name, unless it has an option of that name. */
function addGlobals(cmd: Command): void {
  const names: string[] = [];
  for (const [flags, description] of GLOBAL_OPTIONS) {
    const opt = new Option(flags, description).helpGroup('Global options:');
    if (cmd.options.some((o) => o.long === opt.long)) continue;
    cmd.addOption(opt);
    names.push(opt.attributeName());
  }
  globalsOf.set(cmd, names);
  for (const sub of cmd.commands) addGlobals(sub);
}
for (const c of program.commands) addGlobals(c);
program.hook('preAction', (_program, cmd) => {
  actionCommand = cmd;
});

// `sluice logs -f | head`: the reader went away; that is the end of the output, not an error.
for (const stream of [process.stdout, process.stderr])
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(ExitCodes.ok);
    throw e;
  });

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    // Help and version are not errors.
    process.exit(e.exitCode === 0 ? 0 : ExitCodes.usage);
  }
  const err = e as Error & { code?: string; details?: Record<string, unknown> };
  if (g().json) process.stderr.write(`${JSON.stringify({ error: { code: err.code ?? 'SLUICE_INTERNAL', message: err.message, ...(err.details ? { details: err.details } : {}) } })}\n`);
  else {
    process.stderr.write(`sluice: ${err.message}${err.code ? ` (${err.code})` : ''}\n`);
    // A handler that does not load: the real error's stack is what its author needs.
    if (typeof err.details?.stack === 'string') process.stderr.write(`${err.details.stack.replace(/^/gm, '  ')}\n`);
  }
  process.exit(exitCodeOf(e));
}
