/** retry-policy: when a failed record is retried, and when it is dead-lettered (runtime/retry-policy.ts). */
import { describe, expect, it } from 'vitest';
import { backoffMs, decideRetry, isRetryableCommitError, type RetryPolicy } from '../../runtime/retry-policy.ts';

const policy: RetryPolicy = { maxAttempts: 3, initialBackoffMs: 100, maxBackoffMs: 1000, maxRecordAgeMs: 60_000, deadLetterStream: 'dlq-x' };
const commit = (code: string) => ({ stage: 'commit' as const, error: { code, message: code } });
const handler = (extra: { nonRetryable?: boolean; retryAfterMs?: number } = {}) => ({ stage: 'handler' as const, error: { code: 'SLUICE_HANDLER_FAILED', message: 'boom' }, ...extra });

describe('retry-policy', () => {
  it('retry-policy - backoff doubles from initialBackoff, caps at maxBackoff, jitter within ±20 %', () => {
    expect(backoffMs(policy, 1, () => 0.5)).toBe(100);
    expect(backoffMs(policy, 2, () => 0.5)).toBe(200);
    expect(backoffMs(policy, 3, () => 0.5)).toBe(400);
    expect(backoffMs(policy, 10, () => 0.5)).toBe(1000);
    expect(backoffMs(policy, 1, () => 0)).toBe(80);
    expect(backoffMs(policy, 1, () => 0.999999)).toBe(120);
  });

  it('retry-policy - a handler failure is retried at now + backoff, or at retryAfter', () => {
    expect(decideRetry(policy, handler(), 1, 0, 1000, () => 0.5)).toEqual({ action: 'retry', nextAt: 1100 });
    expect(decideRetry(policy, handler({ retryAfterMs: 5000 }), 1, 0, 1000)).toEqual({ action: 'retry', nextAt: 6000 });
  });

  it('retry-policy - nonRetryable, max attempts and max age dead-letter', () => {
    expect(decideRetry(policy, handler({ nonRetryable: true }), 1, 0, 1000)).toEqual({ action: 'dead_letter', reason: 'non_retryable' });
    expect(decideRetry(policy, handler(), 3, 0, 1000)).toEqual({ action: 'dead_letter', reason: 'max_attempts' });
    expect(decideRetry(policy, handler(), 1, 0, 60_000)).toEqual({ action: 'dead_letter', reason: 'max_age' });
  });

  it('retry-policy - commit errors follow the error table: transient ones retry, deterministic ones dead-letter at once', () => {
    for (const code of ['SLUICE_TIMEOUT', 'SLUICE_BACKEND_UNAVAILABLE', 'SLUICE_INTERNAL', 'SLUICE_CONFLICT', 'not-a-sluice-code']) {
      expect(isRetryableCommitError(code), code).toBe(true);
      expect(decideRetry(policy, commit(code), 1, 0, 1000).action, code).toBe('retry');
    }
    for (const code of ['SLUICE_EXPRESSION_SYNTAX', 'SLUICE_EXPRESSION_INVALID', 'SLUICE_VALUE_TOO_LARGE', 'SLUICE_VALUE_INVALID', 'SLUICE_INVALID_ARGUMENT', 'SLUICE_KEY_INVALID']) {
      expect(decideRetry(policy, commit(code), 1, 0, 1000), code).toEqual({ action: 'dead_letter', reason: 'non_retryable' });
    }
    // A handler failure's code does not decide: only the handler's nonRetryable does.
    expect(decideRetry(policy, { ...handler(), error: { code: 'SLUICE_VALUE_INVALID', message: '' } }, 1, 0, 1000).action).toBe('retry');
  });
});
