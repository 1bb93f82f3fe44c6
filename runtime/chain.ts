/**
 * Chaining without loops (DESIGN "a function never sees the change records of its own commits unless it
 * opts in"): the rules that read and write a change record's cause, in one place.
 *
 * - Every write the committer makes for a record carries `cause = { fn: <this function>, hop: <hop of the
 *   triggering record> + 1 }` (a user's write has no cause: hop 0). The backends stamp it into the change
 *   record (local: the LMDB record; NATS: the change-summary header of the KV message, or `Sluice-Cause` on
 *   a stream message), so it costs no extra write.
 * - A record whose cause is the consuming function itself is dropped before the handler (counted as
 *   `filtered`, the checkpoint moves past it) unless the trigger sets `selfTrigger`.
 * - A record whose hop reached the function's `maxHops` is dead-lettered with SLUICE_HOP_LIMIT instead of
 *   running: a chain of functions that trigger each other (A sets attributes B reacts to and back) ends
 *   after `maxHops` commits, with the evidence in the dead-letter stream.
 */
import type { Cause } from '../bindings/types.ts';

/** Default chain depth at which a record is dead-lettered instead of running (platform default: env SLUICE_MAX_HOPS). */
export const DEFAULT_MAX_HOPS = 8;

/** The cause stamped on the writes of `fn`'s commit for a record that had cause `of`. */
export function commitCause(fn: string, of: Cause | undefined): Cause {
  return { fn, hop: (of?.hop ?? 0) + 1 };
}

/** What the chain rules say about an incoming record: run it, drop it (own change), or dead-letter it. */
export type ChainVerdict = { action: 'run' } | { action: 'drop' } | { action: 'dead_letter'; error: { code: 'SLUICE_HOP_LIMIT'; message: string } };

/** The chain rules for a record with cause `cause` arriving at function `fn`. */
export function chainVerdict(cause: Cause | undefined, fn: string, o: { selfTrigger: boolean; maxHops: number }): ChainVerdict {
  if (cause === undefined) return { action: 'run' };
  if (cause.fn === fn && !o.selfTrigger) return { action: 'drop' };
  if (cause.hop >= o.maxHops)
    return {
      action: 'dead_letter',
      error: {
        code: 'SLUICE_HOP_LIMIT',
        message: `record reached hop ${cause.hop} of a chain of function commits (last by '${cause.fn}'); maxHops is ${o.maxHops}: not run, to stop a trigger loop (raise spec.maxHops if the chain is meant to be this deep)`,
      },
    };
  return { action: 'run' };
}
