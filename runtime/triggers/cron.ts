/**
 * The cron trigger: a ticker that appends ONE tick record per schedule instant to the function's tick
 * stream (`cron-<function>`, one shard). The function consumes that stream like any stream trigger, so a
 * tick gets the same batches, retries, dead letters and exactly-once effects as every other record.
 *
 * Why a stream and not a timer that calls the handler: the stream is the durable memory of which instants
 * were delivered. Every replica runs a ticker (no leader election); each round reads the stream's last tick
 * and appends the due instants with `ifLastSeq` = the last sequence it saw, so of replicas racing for an
 * instant exactly one append lands and the others find it done on their next read. A crash between deciding
 * and appending leaves nothing to repair — the next round reads the last tick again — and instants missed
 * while no worker ran are caught up on recovery by the `catchUp` policy.
 */
import { Cron } from 'croner';
import type { Logger } from 'pino';
import { BindingError } from '../../bindings/errors.ts';
import { lastRecordOfShard0 } from '../../bindings/stream-conditions.ts';
import type { StreamBinding } from '../../bindings/types.ts';

/** Catch-up policy for instants that passed while no ticker ran (or while the previous tick was still running). */
export type CatchUp = 'none' | 'one' | 'all';
/** What to do at an instant while the previous tick has not been handled yet. */
export type Overlap = 'skip' | 'queue';

/** A cron trigger as the worker receives it. */
export interface CronSchedule {
  /** Cron expression, 5 fields or 6 with seconds first (croner syntax, e.g. `*\/10 * * * * *`). */
  schedule: string;
  /** IANA time zone the expression is read in. @default the worker's local zone */
  timezone?: string;
  /** Instants missed during downtime: `none` drops them, `one` delivers the latest once, `all` delivers each (at most 1000). @default 'one' */
  catchUp?: CatchUp;
  /** An instant that arrives while the previous tick is still unhandled: `skip` drops it, `queue` appends it anyway. @default 'skip' */
  overlap?: Overlap;
}

/** The payload of a tick record (JSON in the record's data). */
export interface TickRecord {
  /** The cron expression that produced it. */
  schedule: string;
  /** The schedule instant, ISO-8601. */
  scheduledAt: string;
  /** When the tick was appended (actual time), ISO-8601. */
  firedAt: string;
}

/** Most instants one round appends (catchUp: all after a long outage). */
const MAX_CATCH_UP = 1000;
/** Under catchUp `none`, the newest due instant counts as on time (not missed) within this much of its time. */
const ON_TIME_MS = 2_000;
/** A ticker wakes at least this often (clock jumps, a replica that lost a race). */
const MAX_SLEEP_MS = 30_000;

/** Name of a function's tick stream. */
export function tickStreamName(fn: string): string {
  return `cron-${fn}`;
}

/** Parses a cron expression like the ticker does; throws a plain Error naming the problem (the spec layer adds the path). */
export function parseCron(schedule: string, timezone?: string): Cron {
  if (timezone !== undefined) {
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: timezone });
    } catch {
      throw new Error(`unknown time zone ${JSON.stringify(timezone)} (an IANA name such as Europe/Paris)`);
    }
  }
  return new Cron(schedule, { paused: true, ...(timezone !== undefined ? { timezone } : {}) });
}

/** Decodes a tick record's data. */
export function decodeTick(data: Uint8Array): TickRecord {
  return JSON.parse(Buffer.from(data).toString('utf8')) as TickRecord;
}

/** Options of {@link CronTicker}. */
export interface CronTickerOptions {
  streams: StreamBinding;
  /** The tick stream (created by the caller, one shard). */
  stream: string;
  cron: CronSchedule;
  /** True while the tick at sequence `seq` (the last appended) is not handled yet; only asked under overlap `skip`. */
  busy: (seq: number) => Promise<boolean>;
  log: Logger;
  /** Clock. @default Date.now */
  now?: () => number;
}

/** The outcome of one round (for metrics and tests). */
export interface TickRound {
  appended: number[];
  skipped: number[];
  /** True when another replica appended first. */
  lost: boolean;
}

export class CronTicker {
  readonly #o: CronTickerOptions;
  readonly #cron: Cron;
  readonly #catchUp: CatchUp;
  readonly #overlap: Overlap;
  readonly #now: () => number;
  readonly #startedAt: number;
  /** Instants up to this were skipped by the overlap policy in this process (not appended, not to be reconsidered). */
  #skippedThrough = 0;
  #closed = false;
  #wake: (() => void) | undefined;
  #loop: Promise<void> | undefined;

  constructor(o: CronTickerOptions) {
    this.#o = o;
    this.#cron = parseCron(o.cron.schedule, o.cron.timezone);
    this.#catchUp = o.cron.catchUp ?? 'one';
    this.#overlap = o.cron.overlap ?? 'skip';
    this.#now = o.now ?? Date.now;
    this.#startedAt = this.#now();
  }

  /** Starts the loop: a round at every instant (and at least every 30 s). */
  start(): void {
    this.#loop ??= this.#run();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#wake?.();
    await this.#loop;
  }

  async #run(): Promise<void> {
    while (!this.#closed) {
      try {
        const r = await this.round();
        if (r.appended.length > 0 || r.skipped.length > 0) this.#o.log.info({ appended: r.appended.map((t) => new Date(t).toISOString()), skipped: r.skipped.length }, 'cron ticks');
      } catch (e) {
        // A backend outage: the next round reads the stream again, so nothing is lost or doubled.
        this.#o.log.warn({ err: e }, 'cron round failed');
      }
      const next = this.#cron.nextRun(new Date(this.#now()));
      const wait = next === null ? MAX_SLEEP_MS : Math.min(MAX_SLEEP_MS, Math.max(5, next.getTime() - this.#now() + 5));
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        setTimeout(resolve, wait).unref();
      });
      this.#wake = undefined;
    }
  }

  /** The last tick of the stream: its sequence (0: none) and instant. */
  async #last(): Promise<{ seq: number; instant: number | undefined }> {
    const r = await lastRecordOfShard0(this.#o.streams, this.#o.stream);
    if (r === undefined) return { seq: 0, instant: undefined };
    return { seq: r.seq, instant: Date.parse(decodeTick(r.data).scheduledAt) };
  }

  /** Instants in (after, upTo], oldest first, at most `max` (the newest kept). */
  #instants(after: number, upTo: number, max: number): number[] {
    const out: number[] = [];
    let from = new Date(after);
    // Bounded: a second-resolution schedule over a week-long outage is 600k instants; keep the newest `max`.
    for (let i = 0; i < 1_000_000; i++) {
      const n = this.#cron.nextRun(from);
      if (n === null || n.getTime() > upTo) break;
      out.push(n.getTime());
      if (out.length > max) out.shift();
      from = n;
    }
    return out;
  }

  /** One round at time `now`: appends what is due under the policies. */
  async round(): Promise<TickRound> {
    const now = this.#now();
    const last = await this.#last();
    // Before the first tick ever, the schedule starts when the first ticker started.
    const after = Math.max(last.instant ?? this.#startedAt, this.#skippedThrough);
    let due = this.#instants(after, now, MAX_CATCH_UP);
    const out: TickRound = { appended: [], skipped: [], lost: false };
    if (due.length === 0) return out;
    const newest = due[due.length - 1]!;
    if (this.#catchUp === 'one') due = [newest];
    else if (this.#catchUp === 'none') {
      // Every instant but the newest was missed (a later one has come); the newest counts if it is on time.
      const onTime = now - newest <= ON_TIME_MS;
      out.skipped = onTime ? due.slice(0, -1) : due;
      due = onTime ? [newest] : [];
    }
    if (due.length > 0 && last.seq > 0 && this.#overlap === 'skip' && (await this.#o.busy(last.seq))) {
      out.skipped.push(...due);
      this.#skippedThrough = newest;
      return out;
    }
    if (out.skipped.length > 0) this.#skippedThrough = Math.max(this.#skippedThrough, ...out.skipped);
    let seq = last.seq;
    for (const t of due) {
      const tick: TickRecord = { schedule: this.#o.cron.schedule, scheduledAt: new Date(t).toISOString(), firedAt: new Date(this.#now()).toISOString() };
      const [r] = await this.#o.streams.putRecords(this.#o.stream, [{ shard: 0, data: JSON.stringify(tick), ifLastSeq: seq }]);
      if (r === undefined) throw new BindingError('SLUICE_INTERNAL', `cron: no result appending to ${this.#o.stream}`);
      if (!r.ok) {
        // Another replica appended first: it owns this round; the next round reads its ticks.
        if (r.error.code === 'SLUICE_CONDITION_FAILED') {
          out.lost = true;
          return out;
        }
        throw new BindingError(r.error.code === 'SLUICE_STREAM_NOT_FOUND' ? 'SLUICE_STREAM_NOT_FOUND' : 'SLUICE_INTERNAL', `cron: appending a tick to ${this.#o.stream}: ${r.error.message}`);
      }
      seq = r.seq;
      out.appended.push(t);
    }
    return out;
  }
}
