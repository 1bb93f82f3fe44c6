/**
 * One allocation nats.js makes per request, removed. @nats-io/nats-core 3.x answers a request by
 * settling its promise and then calling `RequestOne.cancel()`, which rejects the already-settled promise
 * with a fresh `RequestError("cancelled")`: a no-op that still builds an Error and captures its stack
 * trace. Every KV get, CAS write and JetStream publish is such a request; in the NATS event-path bench
 * that constructor was the largest self time of the worker's process (10 % of its CPU, and a share of the
 * 15 % spent in GC), measured 2026-12-02 (docs/BENCHMARKS.md).
 *
 * The patch wraps the two methods: `resolver` marks the request settled, and `cancel()` without an error
 * on a settled request does what the original does minus the throwaway rejection (cancel the timer,
 * leave the mux). A request cancelled before its answer — its timeout, a closed connection, an explicit
 * cancel — goes through the original `cancel` and rejects exactly as before. When the installed
 * nats-core does not have these methods (another version), nothing is patched.
 */
import { createRequire } from 'node:module';

interface RequestOneLike {
  timer?: { cancel(): void };
  mux: { cancel(r: unknown): void };
  resolver(err: unknown, msg: unknown): void;
  cancel(err?: unknown): void;
}

const SETTLED = Symbol('sluice.settled');
let applied: boolean | undefined;

/** Installs the patch once per process; true when it is in place. */
export function patchNatsRequests(): boolean {
  if (applied !== undefined) return applied;
  applied = false;
  try {
    const internal = createRequire(import.meta.url)('@nats-io/nats-core/internal') as { RequestOne?: { prototype: RequestOneLike } };
    const proto = internal.RequestOne?.prototype;
    if (proto === undefined || typeof proto.resolver !== 'function' || typeof proto.cancel !== 'function') return false;
    const resolver = proto.resolver;
    const cancel = proto.cancel;
    proto.resolver = function (this: RequestOneLike & { [SETTLED]?: boolean }, err: unknown, msg: unknown): void {
      this[SETTLED] = true;
      resolver.call(this, err, msg);
    };
    proto.cancel = function (this: RequestOneLike & { [SETTLED]?: boolean }, err?: unknown): void {
      if (err === undefined && this[SETTLED] === true) {
        this.timer?.cancel();
        this.mux.cancel(this);
        return;
      }
      cancel.call(this, err);
    };
    applied = true;
  } catch {
    // Not resolvable from here: run unpatched.
  }
  return applied;
}
