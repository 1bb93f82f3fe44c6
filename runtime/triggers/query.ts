/**
 * The scheduled query trigger: at each instant of its schedule (cron expression or fixed `every`), a run
 * selects the bucket's objects matching `where` through `objects.query` and appends one change record per
 * match (`put`, the object's version/etag at selection time) to the function's run stream
 * (`query-<function>`, one shard). The worker consumes that stream as an object trigger on the bucket, so
 * matches arrive in micro-batches with the same record type, prefetch, superseded check and exactly-once
 * attribute commit as uploads.
 *
 * The run stream is also the run's checkpoint, so a crash resumes where it stopped with nothing skipped
 * and nothing appended twice: every record carries the run id and the continuation token of the query
 * page it came from, and pages are in key order. A resumed run reads the last record, queries that page
 * again and appends only the rows after the last key appended. Every append is chained with `ifLastSeq`
 * (record i of a page expects the shard to end at `last + i`), so replicas racing for a run append each
 * row once: a loser's append fails as a whole and it re-reads. A run with no matches appends nothing;
 * its completion is recorded in the run history (state table), which also says when the last run was.
 */
import { Cron } from 'croner';
import type { Logger } from 'pino';
import { encodeChange, sequencer } from '../../bindings/change-record.ts';
import { BindingError } from '../../bindings/errors.ts';
import { lastRecordOfShard0 } from '../../bindings/stream-conditions.ts';
import type { KvBinding, ObjectBinding, QueryRow, StreamBinding } from '../../bindings/types.ts';
import { StateKeys } from '../state.ts';
import { parseCron } from './cron.ts';

/** A scheduled query trigger as the worker receives it. */
export interface QuerySchedule {
  /** The condition (expression language) an object must meet to be delivered. */
  where: string;
  /** Only keys starting with this. @default '' */
  prefix?: string;
  /** Cron expression of the runs (6 fields allowed). Give this or `everyMs`. */
  schedule?: string;
  /** IANA time zone of `schedule`. @default the worker's local zone */
  timezone?: string;
  /** A run every this many ms (instants at multiples of it since the epoch). Give this or `schedule`. */
  everyMs?: number;
  /** Rows per query page (and most records appended in one call). @default 500 */
  pageSize?: number;
}

/** One entry of the run history. */
export interface QueryRun {
  /** The run's schedule instant, ISO-8601 (also its id). */
  id: string;
  startedAt: string;
  /** Absent while the run is going. */
  finishedAt?: string;
  /** Objects this run selected (appended to the run stream). */
  matched: number;
  /** Sequences of the run's first and last record in the run stream (absent before its first match). */
  firstSeq?: number;
  lastSeq?: number;
}

/** Header names on run records (NATS and local keep them as given). */
const RUN_HEADER = 'sluice-run';
const PAGE_HEADER = 'sluice-page';
/** Run history entries kept. */
const HISTORY = 20;
const MAX_SLEEP_MS = 30_000;

/** Name of a function's run stream. */
export function runStreamName(fn: string): string {
  return `query-${fn}`;
}

/** Options of {@link QueryScheduler}. */
export interface QuerySchedulerOptions {
  function: string;
  objects: ObjectBinding;
  streams: StreamBinding;
  /** The run stream (created by the caller, one shard). */
  stream: string;
  /** The state table (run history). */
  state: KvBinding;
  query: QuerySchedule;
  log: Logger;
  /** Clock. @default Date.now */
  now?: () => number;
  /** Called after each appended page (tests). @default none */
  onPage?: (runId: string, rows: number) => void;
  /** Prometheus series of the runs (the worker's registry). @default none */
  metrics?: QueryRunMetrics;
}

/** The series a scheduler keeps: runs finished, objects selected, when the last run finished. */
export interface QueryRunMetrics {
  runs: { inc(): void };
  matched: { inc(n: number): void };
  lastFinished: { set(v: number): void };
}

/** What one round did. */
export interface QueryRound {
  run?: string;
  appended: number;
  finished: boolean;
  /** True when another replica appended first (this one re-reads next round). */
  lost: boolean;
}

export class QueryScheduler {
  readonly #o: QuerySchedulerOptions;
  readonly #cron: Cron | undefined;
  readonly #now: () => number;
  readonly #pageSize: number;
  #closed = false;
  #wake: (() => void) | undefined;
  #loop: Promise<void> | undefined;

  constructor(o: QuerySchedulerOptions) {
    if ((o.query.schedule === undefined) === (o.query.everyMs === undefined)) throw new BindingError('SLUICE_INVALID_ARGUMENT', 'query trigger: give exactly one of schedule and every');
    this.#o = o;
    this.#cron = o.query.schedule !== undefined ? parseCron(o.query.schedule, o.query.timezone) : undefined;
    this.#now = o.now ?? Date.now;
    this.#pageSize = o.query.pageSize ?? 500;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#wake?.();
    await this.#loop;
  }

  /** The newest schedule instant at or before `t`, and the next one after it. */
  #instants(t: number): { latest: number | undefined; next: number } {
    if (this.#o.query.everyMs !== undefined) {
      const e = this.#o.query.everyMs;
      return { latest: Math.floor(t / e) * e, next: (Math.floor(t / e) + 1) * e };
    }
    const prev = this.#cron!.previousRuns(1, new Date(t + 1))[0];
    const next = this.#cron!.nextRun(new Date(t));
    return { latest: prev?.getTime(), next: next?.getTime() ?? t + MAX_SLEEP_MS };
  }

  async #run(): Promise<void> {
    while (!this.#closed) {
      try {
        // Rounds run back to back while a run has pages left; then sleep until the next instant.
        for (;;) {
          const r = await this.round();
          if (r.run !== undefined && (r.appended > 0 || r.finished)) this.#o.log.info({ run: r.run, appended: r.appended, finished: r.finished }, 'query run');
          if (this.#closed || r.finished || r.run === undefined || r.lost) break;
        }
      } catch (e) {
        // The next round re-reads the run stream: nothing is lost or appended twice.
        this.#o.log.warn({ err: e }, 'query round failed');
      }
      const wait = Math.min(MAX_SLEEP_MS, Math.max(5, this.#instants(this.#now()).next - this.#now() + 5));
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        setTimeout(resolve, wait).unref();
      });
      this.#wake = undefined;
    }
  }

  async #history(): Promise<{ runs: QueryRun[]; revision: number }> {
    const cur = await this.#o.state.getItem(StateKeys.queryRuns(this.#o.function));
    return { runs: (cur?.item.runs as QueryRun[] | undefined) ?? [], revision: cur?.revision ?? 0 };
  }

  /** Records `run` in the history (insert or update by id), with revision CAS against racing replicas. */
  async #record(run: QueryRun): Promise<void> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const h = await this.#history();
      const old = h.runs.find((r) => r.id === run.id);
      if (old?.finishedAt !== undefined) return; // another replica finished it
      const runs = [run, ...h.runs.filter((r) => r.id !== run.id)].sort((a, b) => b.id.localeCompare(a.id)).slice(0, HISTORY);
      try {
        await this.#o.state.putItem(StateKeys.queryRuns(this.#o.function), { runs: runs as never }, { ifRevision: h.revision });
        return;
      } catch (e) {
        if ((e as { code?: string }).code !== 'SLUICE_CONDITION_FAILED') throw e;
      }
    }
  }

  /** The last record of the run stream: its seq (0: none), run id, page token and key. */
  async #last(): Promise<{ seq: number; run?: string; page?: string; key?: string }> {
    const r = await lastRecordOfShard0(this.#o.streams, this.#o.stream);
    if (r === undefined) return { seq: 0 };
    return { seq: r.seq, run: r.headers[RUN_HEADER] ?? '', page: r.headers[PAGE_HEADER] ?? '', key: r.partitionKey ?? '' };
  }

  /**
   * One round: continues the run in progress by one page, or starts the run of the newest due instant.
   * Returns what it appended; `finished` when the run has no rows left.
   */
  async round(): Promise<QueryRound> {
    const now = this.#now();
    const last = await this.#last();
    const history = await this.#history();
    const open = last.run !== undefined && last.run !== '' && history.runs.find((r) => r.id === last.run)?.finishedAt === undefined ? last : undefined;
    let runId: string;
    let token: string | undefined;
    let afterKey: string | undefined;
    const newest = history.runs[0];
    if (open !== undefined) {
      // Resume: the page the last record came from, without the rows up to its key.
      runId = open.run!;
      token = open.page === '' ? undefined : open.page;
      afterKey = open.key;
    } else if (newest !== undefined && newest.finishedAt === undefined) {
      // Started, but none of its rows reached the stream (else the last record would be its): from the top.
      runId = newest.id;
    } else {
      const { latest } = this.#instants(now);
      if (latest === undefined) return { appended: 0, finished: false, lost: false };
      if (newest !== undefined && Date.parse(newest.id) >= latest) return { appended: 0, finished: false, lost: false };
      runId = new Date(latest).toISOString();
      await this.#record({ id: runId, startedAt: new Date(now).toISOString(), matched: 0 });
    }
    return this.#page(runId, token, afterKey, last.seq);
  }

  async #page(runId: string, token: string | undefined, afterKey: string | undefined, lastSeq: number): Promise<QueryRound> {
    const q = this.#o.query;
    const page = await this.#o.objects.query({
      where: q.where,
      ...(q.prefix ? { prefix: q.prefix } : {}),
      select: ['size', 'etag', 'version', 'mtime', 'content_type'],
      limit: this.#pageSize,
      ...(token !== undefined ? { continuationToken: token } : {}),
    });
    const rows = afterKey === undefined ? page.rows : page.rows.filter((r) => r.key > afterKey);
    const bucket = (await this.#o.objects.info()).name;
    const records = rows.map((r, i) => ({
      shard: 0,
      partitionKey: r.key,
      data: encodeChange(changeOf(bucket, r)),
      headers: { [RUN_HEADER]: runId, [PAGE_HEADER]: token ?? '' },
      // Chained: the page lands whole after `lastSeq` or not at all (another replica appended first).
      ifLastSeq: lastSeq + i,
    }));
    let appended = 0;
    if (records.length > 0) {
      const res = await this.#o.streams.putRecords(this.#o.stream, records);
      const failed = res.find((r) => !r.ok);
      appended = res.filter((r) => r.ok).length;
      if (failed !== undefined && !failed.ok) {
        if (failed.error.code === 'SLUICE_CONDITION_FAILED') return { run: runId, appended, finished: false, lost: true };
        throw new BindingError('SLUICE_INTERNAL', `query run ${runId}: appending to ${this.#o.stream}: ${failed.error.message}`);
      }
      this.#o.onPage?.(runId, appended);
      this.#o.metrics?.matched.inc(appended);
    }
    const h = await this.#history();
    const found = h.runs.find((r) => r.id === runId) ?? { id: runId, startedAt: new Date(this.#now()).toISOString(), matched: 0 };
    const matched = found.matched + appended;
    const entry: QueryRun = { ...found };
    if (appended > 0) {
      // The run stream has one shard and one writer at a time: a page's records are consecutive.
      entry.firstSeq ??= lastSeq + 1;
      entry.lastSeq = lastSeq + appended;
    }
    if (page.nextToken === undefined) {
      await this.#record({ ...entry, matched, finishedAt: new Date(this.#now()).toISOString() });
      this.#o.metrics?.runs.inc();
      this.#o.metrics?.lastFinished.set(this.#now() / 1000);
      return { run: runId, appended, finished: true, lost: false };
    }
    await this.#record({ ...entry, matched });
    if (page.rows.length > 0 && rows.length === page.rows.length) return { run: runId, appended, finished: false, lost: false };
    // This page was already appended (a resume) or empty: move on to the next page without a record.
    return this.#page(runId, page.nextToken, undefined, lastSeq + appended);
  }
}

/** The change record a query row is delivered as: a `put` of the object as selected. */
function changeOf(bucket: string, r: QueryRow): Parameters<typeof encodeChange>[0] {
  const version = Number(r.version ?? 0);
  return {
    bucket,
    key: r.key,
    type: 'put',
    version,
    size: Number(r.size ?? 0),
    etag: String(r.etag ?? ''),
    mtime: r.mtime instanceof Date ? r.mtime : new Date(String(r.mtime ?? 0)),
    sequencer: sequencer(version),
    attrsRevision: 0,
    contentType: String(r.content_type ?? ''),
  };
}
