/**
 * The console's history: every `intervalMs` the sampler asks the control plane for each function's
 * status and keeps, per function, a bounded ring of samples (lag, rate, replicas) for the charts, plus
 * the latest status for the functions page. Browsers read these snapshots; they never make the
 * controller measure anything themselves, so ten open tabs cost what one does.
 */
import type { FunctionStatus } from '../control-plane.ts';
import type { ConsoleSource } from './console-options.ts';

/** One point of a function's history. */
export interface Sample {
  /** Epoch ms. */
  at: number;
  lag: number;
  ratePerSecond: number;
  ready: number;
  desired: number;
  deadLetters: number;
}

/** A fixed-capacity ring: pushing past capacity drops the oldest sample. */
export class Ring<T> {
  readonly #buf: (T | undefined)[];
  #next = 0;
  #size = 0;

  constructor(capacity: number) {
    this.#buf = new Array<T | undefined>(capacity);
  }

  push(v: T): void {
    this.#buf[this.#next] = v;
    this.#next = (this.#next + 1) % this.#buf.length;
    this.#size = Math.min(this.#size + 1, this.#buf.length);
  }

  /** Oldest first. */
  toArray(): T[] {
    const out: T[] = [];
    const start = (this.#next - this.#size + this.#buf.length) % this.#buf.length;
    for (let i = 0; i < this.#size; i++) out.push(this.#buf[(start + i) % this.#buf.length] as T);
    return out;
  }

  get size(): number {
    return this.#size;
  }
}

export class Sampler {
  readonly #src: ConsoleSource;
  readonly #intervalMs: number;
  readonly #capacity: number;
  readonly #series = new Map<string, Ring<Sample>>();
  readonly #latest = new Map<string, FunctionStatus>();
  #lastError: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(src: ConsoleSource, intervalMs: number, capacity: number) {
    this.#src = src;
    this.#intervalMs = intervalMs;
    this.#capacity = capacity;
  }

  start(): void {
    const tick = () => {
      this.#running = this.sample().finally(() => {
        if (!this.#closed) this.#timer = setTimeout(tick, this.#intervalMs);
      });
    };
    tick();
  }

  /** Takes one sample of every function now (tests call it to step deterministically). */
  async sample(): Promise<void> {
    let names: string[];
    try {
      names = (await this.#src.list()).map((f) => f.name);
      this.#lastError = undefined;
    } catch (e) {
      this.#lastError = `cannot list functions: ${(e as Error).message}`;
      return;
    }
    for (const gone of [...this.#latest.keys()]) if (!names.includes(gone)) (this.#latest.delete(gone), this.#series.delete(gone));
    for (const name of names) {
      try {
        const s = await this.#src.status(name);
        this.#latest.set(name, s);
        let ring = this.#series.get(name);
        if (!ring) this.#series.set(name, (ring = new Ring<Sample>(this.#capacity)));
        ring.push({ at: Date.now(), lag: s.lag, ratePerSecond: s.ratePerSecond, ready: s.replicas.ready, desired: s.replicas.desired, deadLetters: s.deadLetters });
      } catch (e) {
        // A function removed between list and status, or a transient backend error: the next tick retries.
        this.#lastError = `cannot read the status of '${name}': ${(e as Error).message}`;
      }
    }
  }

  /** Latest status of every function, by name. */
  latest(): FunctionStatus[] {
    return [...this.#latest.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  latestOf(name: string): FunctionStatus | undefined {
    return this.#latest.get(name);
  }

  series(name: string): Sample[] {
    return this.#series.get(name)?.toArray() ?? [];
  }

  /** The last sampling problem, if the last round had one. */
  get lastError(): string | undefined {
    return this.#lastError;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#running;
  }
}
