/**
 * The dispatch ring of a handler pool (`dispatch: 'ring'`): ONE SharedArrayBuffer of Int32 words
 * through which the main thread hands ready slots to long-lived handler-thread loops and learns of
 * completions, with no message per batch.
 *
 * | word | meaning |
 * | --- | --- |
 * | 0 `HEAD` | entries pushed (written by main only; threads `waitAsync` on it when the ring is empty) |
 * | 1 `TAIL` | entries taken (threads take with compareExchange) |
 * | 2 `DONE` | completions (threads add 1 and notify after publishing results; main `waitAsync`s on it) |
 * | 3 `STOP` | non-zero: loops return once their batches are done |
 * | 16.. | `capacity` entries of two words: slot, ticket |
 *
 * Counters wrap (Int32): distances are taken `| 0`, positions masked (capacity is a power of two).
 * Single producer (main), several consumers: a consumer reads the entry at `TAIL` before its
 * compareExchange; success proves main had not yet reused that position (it only writes positions
 * less than `capacity` ahead of the `TAIL` it read).
 */

/** Control words. */
export const RingWord = { head: 0, tail: 1, done: 2, stop: 3 } as const;
const BASE = 16;

/** Int32 words of a ring of `capacity` entries (a power of two). */
export function ringWords(capacity: number): number {
  return BASE + capacity * 2;
}

/** The capacity for a pool of `slots` slots: room for every slot plus as many stale entries. */
export function ringCapacity(slots: number): number {
  let c = 16;
  while (c < slots * 2) c *= 2;
  return c;
}

/** Pushes (slot, ticket) (main thread only); false when the ring is full. */
export function ringPush(ctrl: Int32Array, mask: number, slot: number, ticket: number): boolean {
  const head = ctrl[RingWord.head] as number;
  if (((head - Atomics.load(ctrl, RingWord.tail)) | 0) > mask) return false;
  const at = BASE + ((head & mask) << 1);
  ctrl[at] = slot;
  ctrl[at + 1] = ticket;
  Atomics.store(ctrl, RingWord.head, (head + 1) | 0);
  Atomics.notify(ctrl, RingWord.head, 1);
  return true;
}

/** Where {@link ringTake} leaves what it took (per thread; read right after a successful take). */
export const taken = { slot: 0, ticket: 0 };

/** Takes one entry into {@link taken}; false when the ring is empty. */
export function ringTake(ctrl: Int32Array, mask: number): boolean {
  for (;;) {
    const tail = Atomics.load(ctrl, RingWord.tail);
    if (tail === Atomics.load(ctrl, RingWord.head)) return false;
    const at = BASE + ((tail & mask) << 1);
    const slot = ctrl[at] as number;
    const ticket = ctrl[at + 1] as number;
    if (Atomics.compareExchange(ctrl, RingWord.tail, tail, (tail + 1) | 0) === tail) {
      taken.slot = slot;
      taken.ticket = ticket;
      return true;
    }
  }
}

/** `Atomics.waitAsync` (Node ≥ 16; not in the ES2023 lib typings). */
export type WaitAsync = (a: Int32Array, index: number, value: number, timeoutMs?: number) => { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };
export const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;
