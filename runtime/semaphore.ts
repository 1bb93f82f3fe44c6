/** A counting semaphore with a bounded, abortable wait queue: the worker's batch credits. */
import { BindingError } from '../bindings/errors.ts';

export class Semaphore {
  #free: number;
  readonly #waiters: { resolve: () => void; reject: (e: unknown) => void; signal: AbortSignal | undefined; onAbort: () => void }[] = [];
  #size: number;

  constructor(size: number) {
    this.#size = size;
    this.#free = size;
  }

  /** Number of credits. */
  get size(): number {
    return this.#size;
  }

  /** Changes the number of credits; credits in use stay taken (the pool shrinks as they come back). */
  resize(size: number): void {
    if (!Number.isInteger(size) || size < 1) throw new BindingError('SLUICE_INVALID_ARGUMENT', `credits must be a positive integer, got ${size}`);
    this.#free += size - this.#size;
    this.#size = size;
    while (this.#free > 0 && this.#waiters.length > 0) {
      this.#free--;
      const w = this.#waiters.shift()!;
      w.signal?.removeEventListener('abort', w.onAbort);
      w.resolve();
    }
  }

  /** Credits in use. */
  get inUse(): number {
    return this.#size - this.#free;
  }

  /** Takes a credit, waiting for one; rejects with SLUICE_ABORTED when the signal aborts first. */
  acquire(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(new BindingError('SLUICE_ABORTED', 'credit wait aborted'));
    if (this.#free > 0) {
      this.#free--;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const w = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          const i = this.#waiters.indexOf(w);
          if (i >= 0) this.#waiters.splice(i, 1);
          reject(new BindingError('SLUICE_ABORTED', 'credit wait aborted'));
        },
      };
      signal?.addEventListener('abort', w.onAbort, { once: true });
      this.#waiters.push(w);
    });
  }

  release(): void {
    const w = this.#waiters.shift();
    if (w) {
      w.signal?.removeEventListener('abort', w.onAbort);
      w.resolve();
    } else this.#free = Math.min(this.#size, this.#free + 1);
  }
}
