/** The worker's Prometheus metrics (prom-client), one registry per worker. */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Outcomes a record can have. */
export const Outcomes = ['ok', 'retry', 'dead_letter', 'filtered', 'superseded', 'duplicate', 'gone'] as const;
/** One of {@link Outcomes}. */
export type Outcome = (typeof Outcomes)[number];

/** Metrics of one worker. */
export class WorkerMetrics {
  readonly registry = new Registry();
  readonly events: Counter<'function' | 'outcome'>;
  readonly batchSize: Histogram<'function'>;
  readonly handlerSeconds: Histogram<'function'>;
  readonly commitSeconds: Histogram<'function'>;
  readonly lag: Gauge<'function' | 'shard'>;
  readonly slotsInUse: Gauge<'function'>;
  readonly retries: Counter<'function'>;
  readonly deadLetters: Counter<'function'>;
  readonly ownedShards: Gauge<'function'>;
  /** The handler's own counters (`ctx.count`), as committed with each batch's checkpoint. */
  readonly userCounters: Counter<'function' | 'name'>;
  readonly commitFailures: Counter<'function' | 'code'>;
  /** Unix seconds when each owned shard last finished a step (a batch, or a poll that found nothing new). */
  readonly shardLastStep: Gauge<'function' | 'shard'>;
  /** Unix seconds when each owned shard's position last moved forward. */
  readonly shardLastAdvance: Gauge<'function' | 'shard'>;
  /** Shard runners replaced by the stall watchdog (a step that did not finish within the bound). */
  readonly shardStalls: Counter<'function'>;

  constructor(fn: string) {
    const r = [this.registry];
    this.registry.setDefaultLabels({ function: fn });
    this.events = new Counter({ name: 'sluice_events_total', help: 'Records by outcome', labelNames: ['function', 'outcome'], registers: r });
    this.batchSize = new Histogram({ name: 'sluice_batch_records', help: 'Records per handler batch', labelNames: ['function'], buckets: [1, 5, 10, 25, 50, 100, 250, 500, 1000], registers: r });
    this.handlerSeconds = new Histogram({ name: 'sluice_handler_seconds', help: 'Handler time per batch', labelNames: ['function'], buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30], registers: r });
    this.commitSeconds = new Histogram({ name: 'sluice_commit_seconds', help: 'Commit time per batch (effects, dead letters, checkpoint)', labelNames: ['function'], buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5], registers: r });
    this.lag = new Gauge({ name: 'sluice_lag_records', help: 'Records behind the head of each owned shard', labelNames: ['function', 'shard'], registers: r });
    this.slotsInUse = new Gauge({ name: 'sluice_slots_in_use', help: 'Shared-memory slots holding a batch', labelNames: ['function'], registers: r });
    this.retries = new Counter({ name: 'sluice_retries_total', help: 'Records scheduled for another attempt', labelNames: ['function'], registers: r });
    this.deadLetters = new Counter({ name: 'sluice_dead_letters_total', help: 'Records sent to the dead-letter stream', labelNames: ['function'], registers: r });
    this.ownedShards = new Gauge({ name: 'sluice_owned_shards', help: 'Shards this worker holds the lease of', labelNames: ['function'], registers: r });
    this.userCounters = new Counter({ name: 'sluice_function_counter_total', help: "The function's own counters (ctx.count), counted when their batch commits", labelNames: ['function', 'name'], registers: r });
    this.commitFailures = new Counter({ name: 'sluice_commit_failures_total', help: 'Record commits that failed, by error code (each is retried or dead-lettered)', labelNames: ['function', 'code'], registers: r });
    this.shardLastStep = new Gauge({ name: 'sluice_shard_last_step_seconds', help: 'When each owned shard last finished a step (unix seconds): a batch, or a poll that found nothing new', labelNames: ['function', 'shard'], registers: r });
    this.shardLastAdvance = new Gauge({ name: 'sluice_shard_last_advance_seconds', help: "When each owned shard's position last moved forward (unix seconds)", labelNames: ['function', 'shard'], registers: r });
    this.shardStalls = new Counter({ name: 'sluice_shard_stalls_total', help: 'Shard runners replaced because a step did not finish within the stall bound', labelNames: ['function'], registers: r });
    for (const o of Outcomes) this.events.inc({ outcome: o }, 0);
    // Process metrics (CPU, memory, event-loop lag, GC) of this worker.
    collectDefaultMetrics({ register: this.registry });
  }

  /** Adds a committed batch's counters. */
  countUser(counters: Readonly<Record<string, number>>): void {
    for (const [name, n] of Object.entries(counters)) if (n > 0) this.userCounters.inc({ name }, n);
  }

  count(outcome: Outcome, n = 1): void {
    if (n > 0) this.events.inc({ outcome }, n);
  }
}
