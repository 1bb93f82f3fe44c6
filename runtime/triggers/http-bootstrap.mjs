// The entry of HTTP handler threads (runtime/triggers/http-pool.ts): registers tsx's loader hooks in the
// thread (as runtime/threads/bootstrap.mjs does for batch threads), then serves requests.
import { register } from 'tsx/esm/api';

register();
const thread = await import('./http-thread.ts');
thread.serveHttpThread();
