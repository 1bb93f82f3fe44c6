// piscina's entry for HTTP handler threads: registers tsx's loader hooks in the thread (as
// runtime/threads/bootstrap.mjs does for batch threads), then imports the TypeScript task module.
import { register } from 'tsx/esm/api';

register();
const thread = await import('./http-thread.ts');

/** piscina's task function (see http-thread.ts). */
export default thread.default;
