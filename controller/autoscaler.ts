/**
 * The autoscaler as a pure function: from lag, rates and recent history to a replica count.
 *
 * Like the Kubernetes HPA: a raw recommendation from the metrics, clamped to [min, max], then
 * stabilised — scaling up takes the lowest recommendation of the scale-up window, scaling down the
 * highest of the scale-down window, so one noisy sample never flaps the workers. Scale to zero after
 * `scaleToZeroAfterMs` of no lag and no incoming records (when min is 0); activation to one replica
 * as soon as records arrive, without waiting for any window.
 *
 * Two terms make the raw recommendation, the larger wins: lag / targetLagPerReplica, and incoming rate /
 * what one replica handles per second. The controller measures the latter only over intervals in which
 * records waited for the replicas throughout (a rate seen while they keep up is what arrived, not what
 * they could take), so a function that keeps up is never scaled by the rate term.
 */

/** Inputs of one autoscaling decision. */
export interface ScaleInput {
  /** Records not yet handled, over all shards. */
  lag: number;
  /** Records arriving per second (recent average). */
  incomingPerSecond: number;
  /** Records one replica handles per second when busy (measured under a backlog; 0 when unknown). */
  throughputPerReplica: number;
  /** Lag one replica should carry at most. */
  targetLagPerReplica: number;
  current: number;
  min: number;
  max: number;
  /** Epoch ms of this decision. */
  now: number;
  /** Epoch ms of the last time lag or incoming records were non-zero. */
  lastActiveAt: number;
  scaleToZeroAfterMs: number;
  /** Window over which scale-ups are stabilised. @default 0 */
  scaleUpWindowMs?: number;
  /** Window over which scale-downs are stabilised. @default 60000 */
  scaleDownWindowMs?: number;
  /** Earlier raw recommendations (any order); entries older than both windows are ignored. */
  history: readonly { at: number; replicas: number }[];
}

/** A decision and why it was taken. */
export interface ScaleDecision {
  replicas: number;
  /** The raw recommendation before stabilisation (record it in the history). */
  recommendation: number;
  reason: string;
}

/** Replicas wanted for `input`. Pure: same input, same answer. */
export function desiredReplicas(input: ScaleInput): ScaleDecision {
  const { lag, min, max, current, now } = input;
  if (!(min >= 0 && max >= 1 && min <= max)) throw new RangeError(`desiredReplicas: need 0 <= min <= max and max >= 1 (min ${min}, max ${max})`);
  const active = lag > 0 || input.incomingPerSecond > 0;
  // Scale to zero: only when allowed, idle long enough.
  if (min === 0 && !active && now - input.lastActiveAt >= input.scaleToZeroAfterMs) {
    return { replicas: 0, recommendation: 0, reason: `idle for ${now - input.lastActiveAt} ms ≥ ${input.scaleToZeroAfterMs} ms: scale to zero` };
  }
  const byLag = input.targetLagPerReplica > 0 ? Math.ceil(lag / input.targetLagPerReplica) : 0;
  const byRate = input.throughputPerReplica > 0 ? Math.ceil(input.incomingPerSecond / input.throughputPerReplica) : 0;
  const floor = Math.max(min, 1);
  const recommendation = Math.min(max, Math.max(floor, byLag, byRate));
  // Activation: from zero, records waiting bring one replica at once.
  if (current === 0) {
    if (!active) return { replicas: Math.max(min, 0), recommendation, reason: 'no records: stay at zero' };
    return { replicas: Math.max(1, recommendation), recommendation, reason: `activation: lag ${lag}, ${input.incomingPerSecond}/s incoming` };
  }
  const up = input.scaleUpWindowMs ?? 0;
  const down = input.scaleDownWindowMs ?? 60_000;
  const within = (w: number) => [recommendation, ...input.history.filter((h) => now - h.at <= w).map((h) => h.replicas)];
  let replicas = current;
  let reason = `steady at ${current} (lag ${lag}, recommendation ${recommendation})`;
  if (recommendation > current) {
    replicas = Math.max(current, Math.min(...within(up)));
    reason = `scale up: lag ${lag} / ${input.targetLagPerReplica} per replica, ${input.incomingPerSecond}/s incoming → ${replicas}`;
  } else if (recommendation < current) {
    replicas = Math.min(current, Math.max(...within(down)));
    reason = replicas < current ? `scale down to ${replicas}: highest recommendation in ${down} ms` : `hold at ${current}: scale-down window not passed`;
  }
  return { replicas: Math.min(max, Math.max(floor, replicas)), recommendation, reason };
}

/**
 * Splits a function-wide cap of batches in flight across replicas: floor(cap / R) each, the remainder
 * to the lowest ordinals, so the replicas together hold exactly `cap` credits. Every replica keeps at
 * least one (a replica without credits would stall its shards), so the effective cap is max(cap, R).
 */
export function creditsPerReplica(maxBatchesInFlight: number | undefined, replicas: number, ordinal: number, perWorkerDefault: number): number {
  if (maxBatchesInFlight === undefined || replicas < 1) return perWorkerDefault;
  const share = Math.floor(maxBatchesInFlight / replicas) + (ordinal < maxBatchesInFlight % replicas ? 1 : 0);
  return Math.max(1, share);
}
