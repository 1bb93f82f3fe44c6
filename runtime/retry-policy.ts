/**
 * What to do with a failed record: retry it (when), or dead-letter it. Pure apart from the injectable
 * random source for jitter, so every rule below has a unit test.
 *
 * - A handler failure (`record.fail`, or the batch throwing) is retried unless the handler said
 *   `nonRetryable`; `retryAfter` (from `RetryAfterError` or `fail(..., { retryAfter })`) replaces the backoff.
 * - A commit failure is retried when the error table says its code is retryable
 *   (`mappingOf(code).retryable`: timeouts, an unavailable backend, internal errors); a code that fails the
 *   same way on every attempt (bad expression, value too large, invalid argument, key invalid, bucket
 *   gone, access denied) goes to the dead-letter stream at once.
 * - Either way, a record dead-letters after `maxAttempts` attempts or once `maxRecordAge` passed since its
 *   first attempt.
 * - Backoff: `initialBackoff · 2^(attempts-1)`, capped at `maxBackoff`, with ±20 % jitter so records that
 *   failed together (a backend outage) do not retry in lockstep.
 */
import { mappingOf } from '../bindings/error-table.ts';
import type { ResolvedWorkerOptions } from './worker-options.ts';

/** The retry options in force (resolved, milliseconds). */
export type RetryPolicy = ResolvedWorkerOptions['retries'];

/** Why a record failed, as the retry decision needs it. */
export interface Failure {
  /** The handler failed it (`handler`), or writing its effects failed (`commit`). */
  stage: 'handler' | 'commit';
  error: { code: string; message: string };
  /** The handler said not to retry (NonRetryableError / `fail(..., { nonRetryable: true })`). */
  nonRetryable?: boolean;
  /** The handler asked for this delay before the next attempt. */
  retryAfterMs?: number;
}

/** The decision for one failed record. */
export type RetryDecision = { action: 'retry'; nextAt: number } | { action: 'dead_letter'; reason: 'non_retryable' | 'max_attempts' | 'max_age' };

/** True when a commit failing with `code` may succeed if tried again unchanged. */
export function isRetryableCommitError(code: string): boolean {
  return mappingOf(code).retryable;
}

/** Backoff before attempt `attempts + 1`, with ±20 % jitter. */
export function backoffMs(policy: Pick<RetryPolicy, 'initialBackoffMs' | 'maxBackoffMs'>, attempts: number, random: () => number = Math.random): number {
  const base = Math.min(policy.maxBackoffMs, policy.initialBackoffMs * 2 ** Math.max(0, attempts - 1));
  return Math.round(base * (0.8 + random() * 0.4));
}

/**
 * Decides for a record that failed its `attempts`-th attempt (1-based), first tried at `firstAt`.
 */
export function decideRetry(policy: RetryPolicy, failure: Failure, attempts: number, firstAt: number, now: number, random: () => number = Math.random): RetryDecision {
  const permanent = failure.nonRetryable === true || (failure.stage === 'commit' && !isRetryableCommitError(failure.error.code));
  if (permanent) return { action: 'dead_letter', reason: 'non_retryable' };
  if (attempts >= policy.maxAttempts) return { action: 'dead_letter', reason: 'max_attempts' };
  if (now - firstAt >= policy.maxRecordAgeMs) return { action: 'dead_letter', reason: 'max_age' };
  return { action: 'retry', nextAt: now + (failure.retryAfterMs ?? backoffMs(policy, attempts, random)) };
}
