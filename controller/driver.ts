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

/** A place where workers run. */
export interface Driver {
  readonly kind: 'local' | 'kubernetes';
  /** Creates or updates the workload of a function (spec change: rolling restart), keeping its replica count. */
  apply(spec: FunctionSpec, specDir: string): Promise<void>;
  /** Sets the replica count (0 stops every worker of the function). */
  scale(name: string, replicas: number): Promise<void>;
  /** Removes the workload; false when there was none. */
  remove(name: string): Promise<boolean>;
  status(name: string): Promise<WorkloadStatus | undefined>;
  /** Stops what the driver started (local: graceful SIGTERM of every worker). */
  close(): Promise<void>;
}
