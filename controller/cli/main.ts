/**
 * `sluice`: the command line. A thin entry: global options, one file per command group, and the
 * documented exit codes (context.ts `ExitCodes`).
 */
import { Command, CommanderError } from 'commander';
import { ExitCodes, exitCodeOf, type GlobalOptions } from './context.ts';
import { register as dev } from './commands/dev.ts';
import { register as functions } from './commands/functions.ts';
import { register as kv } from './commands/kv.ts';
import { register as objects } from './commands/objects.ts';
import { register as render } from './commands/render.ts';
import { register as stream } from './commands/stream.ts';

const program = new Command('sluice')
  .description('serverless event functions over unified data APIs')
  .option('--json', 'print JSON for scripts')
  .option('--data <dir|nats-url>', 'data backend (default $SLUICE_DATA or ./.sluice-data)')
  .option('--server <host:port>', 'control API (default $SLUICE_SERVER or 127.0.0.1:7070)')
  .option('--token <token>', 'control API token (default $SLUICE_TOKEN or <data>/token)')
  .addHelpText(
    'after',
    `\nExit codes: ${Object.entries(ExitCodes)
      .map(([k, v]) => `${v} ${k}`)
      .join(', ')}`,
  )
  .exitOverride()
  .showHelpAfterError();
const g = (): GlobalOptions => program.opts<GlobalOptions>();
for (const r of [dev, functions, objects, kv, stream, render]) r(program, g);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    // Help and version are not errors.
    process.exit(e.exitCode === 0 ? 0 : ExitCodes.usage);
  }
  const err = e as Error & { code?: string };
  if (g().json) process.stderr.write(`${JSON.stringify({ error: { code: err.code ?? 'SLUICE_INTERNAL', message: err.message } })}\n`);
  else process.stderr.write(`sluice: ${err.message}${err.code ? ` (${err.code})` : ''}\n`);
  process.exit(exitCodeOf(e));
}
