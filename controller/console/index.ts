/** The web console (`sluice dev --ui`, or `controller/console/main.ts` standalone). */
export { startConsole, type RunningConsole } from './server.ts';
export { parseAddress, resolveConsoleOptions, type ConsoleOptions, type ConsoleSource, type ResolvedConsoleOptions } from './console-options.ts';
