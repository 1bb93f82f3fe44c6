/**
 * Deadlines for many short requests on few timers: deadlines are grouped into slots of
 * {@link SLOT_MS}, one `setTimeout` per slot, instead of one timer (or `AbortSignal.timeout`) per request.
 *
 * Why: at thousands of requests per second the per-request timer (insert, cancel, its AbortSignal's
 * weak bookkeeping) showed in the worker's CPU profile; nearly every request finishes long before its
 * deadline, so the cheapest timer is one shared with the requests around it. A deadline fires up to one
 * slot late, never early.
 */

/** Granularity of the wheel: deadlines fire at most this much late. */
export const SLOT_MS = 10;

/** A deadline registered on the wheel; `cancel()` when the work finished in time. */
export interface Deadline {
  cancel(): void;
}

/** A slot entry is its own Deadline handle: one object per deadline, no closure. */
class Entry implements Deadline {
  fn: (() => void) | undefined;
  constructor(fn: () => void) {
    this.fn = fn;
  }
  cancel(): void {
    this.fn = undefined;
  }
}

export class DeadlineWheel {
  readonly #slots = new Map<number, Entry[]>();

  /** Calls `fn` once `deadlineMs` (epoch ms) has passed, unless cancelled first. */
  at(deadlineMs: number, fn: () => void): Deadline {
    const slot = Math.ceil(deadlineMs / SLOT_MS);
    const entry = new Entry(fn);
    let list = this.#slots.get(slot);
    if (list === undefined) {
      list = [];
      this.#slots.set(slot, list);
      const t = setTimeout(() => this.#fire(slot), Math.max(0, slot * SLOT_MS - Date.now()));
      // A wheel must not keep a process alive on its own; the work it guards does.
      t.unref();
    }
    list.push(entry);
    return entry;
  }

  #fire(slot: number): void {
    const list = this.#slots.get(slot);
    this.#slots.delete(slot);
    for (const e of list ?? []) e.fn?.();
  }
}
