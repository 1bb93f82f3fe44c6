// piscina's entry for handler threads. piscina loads workers from a JavaScript file, so this file
// registers tsx's ESM loader hooks in the thread (Node 20 `module.register`, which tsx/esm/api wraps)
// and then imports the TypeScript handler thread. When the process itself runs under tsx, the thread
// inherits its hooks through execArgv and registering again is harmless.
import { register } from 'tsx/esm/api';

register();
const thread = await import('./handler-thread.ts');

/** piscina's task function (see handler-thread.ts). */
export default thread.default;
