/**
 * `sluice dev`: the local platform in one command — embedded backend, controller, worker processes and
 * the control API — deploying every `functions/<name>/function.yaml` and redeploying on change.
 * `--demo` then uploads the sample files and prints what the functions found. The work is in
 * `dev-run.ts`, loaded on use so that the other commands start without the platform's modules.
 */
import type { Command } from 'commander';
import { intArg, type GlobalOptions } from '../context.ts';
import type { DevOptions } from './dev-run.ts';

export function register(program: Command, g: () => GlobalOptions): void {
  program
    .command('dev')
    .description('run the local platform: embedded backend, controller, workers, control API; deploys ./functions/*/function.yaml and redeploys on change')
    .option('--functions <dir>', 'directory of function folders', 'functions')
    .option('--port <port>', 'control API port', intArg(0), 7070)
    .option('--metrics <host:port>', 'serve Prometheus /metrics of the controller and every worker here', '127.0.0.1:7072')
    .option('--demo', 'upload the sample files of functions/scan-sensitive/samples (and functions/image-meta/samples, through image-meta and geo-index) and print what was found')
    .option('--exit-after-demo', 'stop after the demo (for scripts and tests)')
    .option('--ui <host:port>', 'web console address (port 0: any free port); its URL is the first line printed', '127.0.0.1:7071')
    .option('--no-ui', 'do not serve the web console')
    .option('--http <host:port>', 'HTTP ingress of http-triggered functions (port 0: any free port)', '127.0.0.1:8080')
    .option('--no-http', 'do not serve the HTTP ingress')
    .option('--s3 <host:port>', 'S3 gateway address (0 = a free port on 127.0.0.1) (default: 127.0.0.1:9000)')
    .action(async (o: DevOptions, cmd: Command) => {
      const { runDev } = await import('./dev-run.ts');
      await runDev({ ...o, uiIsDefault: cmd.getOptionValueSource('ui') === 'default', httpIsDefault: cmd.getOptionValueSource('http') === 'default' }, g());
    });
}
