/**
 * Live logs for the console: one follow of `plane.logs(name, {follow: true})` per function that a
 * browser is looking at, into a bounded ring with increasing line numbers; pages poll "lines after
 * n". A follow nobody has read for `idleMs` is stopped, so a closed tab does not keep a stream open.
 */
import type { LogLine } from '../control-plane.ts';
import type { ConsoleSource } from './console-options.ts';

interface Tail {
  lines: { n: number; line: LogLine }[];
  next: number;
  lastReadAt: number;
  abort: AbortController;
  error: string | undefined;
}

export class LogTails {
  readonly #src: ConsoleSource;
  readonly #max: number;
  readonly #idleMs: number;
  readonly #tails = new Map<string, Tail>();
  readonly #sweep: NodeJS.Timeout;

  constructor(src: ConsoleSource, maxLines: number, idleMs: number) {
    this.#src = src;
    this.#max = maxLines;
    this.#idleMs = idleMs;
    this.#sweep = setInterval(() => {
      for (const [name, t] of this.#tails) if (Date.now() - t.lastReadAt > this.#idleMs) (t.abort.abort(), this.#tails.delete(name));
    }, Math.min(idleMs, 10_000));
    this.#sweep.unref();
  }

  /** Lines numbered above `after` (oldest first), starting the follow on first use. */
  read(name: string, after: number): { lines: { n: number; line: LogLine }[]; next: number; error?: string } {
    let t = this.#tails.get(name);
    if (!t) this.#tails.set(name, (t = this.#follow(name)));
    t.lastReadAt = Date.now();
    const lines = t.lines.filter((l) => l.n > after);
    return { lines, next: t.next - 1, ...(t.error !== undefined ? { error: t.error } : {}) };
  }

  #follow(name: string): Tail {
    const t: Tail = { lines: [], next: 1, lastReadAt: Date.now(), abort: new AbortController(), error: undefined };
    void (async () => {
      try {
        for await (const line of this.#src.logs(name, { follow: true, signal: t.abort.signal })) {
          t.lines.push({ n: t.next++, line });
          if (t.lines.length > this.#max) t.lines.splice(0, t.lines.length - this.#max);
        }
      } catch (e) {
        if (!t.abort.signal.aborted) t.error = (e as Error).message;
      }
      // Ended (function removed, driver without logs): forget it so a later read starts again.
      if (this.#tails.get(name) === t && t.error === undefined) this.#tails.delete(name);
    })();
    return t;
  }

  close(): void {
    clearInterval(this.#sweep);
    for (const t of this.#tails.values()) t.abort.abort();
    this.#tails.clear();
  }
}
