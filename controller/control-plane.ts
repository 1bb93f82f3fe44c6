/**
 * What the control API (gRPC) and the CLI ask of the controller. The gRPC server is a thin adapter over
 * this contract; the controller implements it.
 */
import type { FunctionSpec } from './spec/types.ts';

/** One shard of a function as the status shows it. */
export interface ShardStatus {
  shard: number;
  /** Worker id holding the lease ('' when none). */
  owner: string;
  epoch: number;
  /** Records not yet handled (head − checkpoint + pending). */
  lag: number;
  /** Records waiting for a retry. */
  pending: number;
}

/** A deployed function's status. */
export interface FunctionStatus {
  name: string;
  /** Spec revision (increases with every deploy). */
  revision: number;
  replicas: { desired: number; ready: number };
  shards: ShardStatus[];
  /** Total lag over shards. */
  lag: number;
  /** Records handled per second over the last minute. */
  ratePerSecond: number;
  /** Counters of the function (exact totals). */
  counters: Record<string, number>;
  /** Dead letters so far. */
  deadLetters: number;
  /** Most recent errors (worker crashes, dead letters), newest first. */
  errors: { at: string; message: string }[];
  /** Restarts of crashed workers since the current revision was applied. */
  restarts: number;
  /** The most recent error a worker reported or died of, or a refused reload; absent when none. */
  lastError?: { at: string; message: string };
  /** Runs of a scheduled query trigger, newest first (absent for other triggers). */
  queryRuns?: QueryRunStatus[];
}

/** One run of a scheduled query trigger as `status` shows it. */
export interface QueryRunStatus {
  /** The run's schedule instant (ISO 8601), also its id. */
  id: string;
  startedAt: string;
  /** Absent while the run is going. */
  finishedAt?: string;
  /** Objects the run selected. */
  matched: number;
  /** Selected objects the function has handled (committed, skipped or dead-lettered). */
  processed: number;
  /** Selected objects waiting for a retry after a failure. */
  failed: number;
}

/** A log line of a function's workers. */
export interface LogLine {
  at: string;
  ordinal: number;
  level: string;
  message: string;
  fields: Record<string, unknown>;
}

/** The synthetic event of `invoke`. */
export interface InvokeEvent {
  key: string;
  /** @default empty */
  body?: Uint8Array;
  /** @default {} */
  attrs?: Record<string, unknown>;
  /** Bindings on a scratch store rather than the platform's (nothing on the platform changes). @default false */
  dryRun?: boolean;
}

/** The controller as seen by its clients. */
export interface ControlPlane {
  /** Validates and stores a spec (YAML text), then reconciles. Returns the new revision. */
  deploy(specYaml: string, specDir: string): Promise<{ name: string; revision: number }>;
  /** Removes a function and stops its workers; false when unknown. */
  remove(name: string): Promise<boolean>;
  list(): Promise<{ name: string; revision: number; replicas: number }[]>;
  status(name: string): Promise<FunctionStatus>;
  /** Pins the replica count (within minReplicas..maxReplicas; SLUICE_INVALID_ARGUMENT past them). */
  scale(name: string, replicas: number): Promise<void>;
  /** Runs the handler once on a synthetic event in a process of its own; returns the declared effects, logs and error as JSON. */
  invoke(name: string, event: InvokeEvent): Promise<unknown>;
  /** Log lines of the function's workers; follows new lines until the signal aborts when `follow`. */
  logs(name: string, options: { follow: boolean; signal?: AbortSignal }): AsyncIterable<LogLine>;
}
