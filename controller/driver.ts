/**
 * Drivers turn a function's desired replica count into running workers: `local` (worker processes
 * with ordinals on this machine) and `kubernetes` (a StatefulSet per function, scaled through the
 * scale subresource). The controller talks only to this contract.
 */
import type { FunctionSpec } from './spec/types.ts';

/** What a driver reports about one function's workload. */
export interface WorkloadStatus {
  /** Replicas asked for. */
  desired: number;
  /** Replicas running and ready. */
  ready: number;
  /** Per replica (ordinal), when the driver knows: pid or pod name, and restarts. */
  replicas: { ordinal: number; id: string; ready: boolean; restarts: number }[];
  /** Restarts of crashed workers (all replicas) since the workload was applied, when the driver knows. */
  restarts?: number;
  /** The most recent error a worker reported or died of, when the driver knows. */
  lastError?: { at: string; message: string; ordinal: number };
}

/** Options of {@link Driver.apply}. */
export interface ApplyOptions {
  /**
   * Settles when the new revision may take over. A driver may boot the new workers before it settles
   * (they stay idle while the running revision keeps its shards) and drops them when it rejects, with
   * `apply` rejecting with the same reason: the controller passes its deploy-time sandbox load, so the
   * sandbox and the boot of the new workers overlap. @default none (take over once booted)
   */
  gate?: Promise<unknown>;
}

/** How long each phase of a rollout took, in ms by phase name, for the deploy event (local driver). */
export type RolloutPhases = Readonly<Record<string, number>>;

/** A place where workers run. */
export interface Driver {
  readonly kind: 'local' | 'kubernetes';
  /** Creates or updates the workload of a function (spec change: rolling restart), keeping its replica count. */
  apply(spec: FunctionSpec, specDir: string, options?: ApplyOptions): Promise<RolloutPhases | void>;
  /** Sets the replica count (0 stops every worker of the function). */
  scale(name: string, replicas: number): Promise<void>;
  /** Removes the workload; false when there was none. */
  remove(name: string): Promise<boolean>;
  status(name: string): Promise<WorkloadStatus | undefined>;
  /** Stops what the driver started (local: graceful SIGTERM of every worker). */
  close(): Promise<void>;
}
