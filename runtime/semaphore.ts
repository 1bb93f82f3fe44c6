/** A counting semaphore with a bounded, abortable wait queue: the worker's batch credits. */
import { BindingError } from '../bindings/errors.ts';

export class Semaphore {
  #free: number;
  readonly #waiters: { resolve: () => void; reject: (e: unknown) => void; signal: AbortSignal | undefined; onAbort: () => void }[] = [];
  readonly size: number;

  constructor(size: number) {
    this.size = size;
    this.#free = size;
  }

  /** Credits in use. */
  get inUse(): number {
    return this.size - this.#free;
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
    } else this.#free = Math.min(this.size, this.#free + 1);
  }
}
