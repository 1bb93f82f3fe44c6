/** state: every key of the state table and the typed codecs of what is stored under it (runtime/state.ts). */
import { describe, expect, it } from 'vitest';
import { decodeCheckpoint, decodeLease, decodeReplicas, encodeCheckpoint, encodeLease, StateKeys, type Checkpoint } from '../../runtime/state.ts';

describe('state', () => {
  it('state - keys are built in one place', () => {
    expect(StateKeys.lease('fn', 3)).toBe('lease/fn/3');
    expect(StateKeys.checkpoint('fn', 3)).toBe('ckpt/fn/3');
    expect(StateKeys.replicas('fn')).toBe('replicas/fn');
  });

  it('state - a checkpoint round-trips through its item encoding', () => {
    const c: Checkpoint = {
      seq: 42,
      pending: [
        { seq: 7, key: 'a', attempts: 2, firstAt: 1, nextAt: 9, error: { code: 'SLUICE_TIMEOUT', message: 'slow' } },
        { seq: 8, key: 'a', attempts: 0, firstAt: 1, nextAt: 0 },
      ],
      holds: [{ counts: { seen: 3 }, seqs: [8] }],
      counts: { seen: 30, has_ssn: 2 },
      handled: 33,
      epoch: 5,
    };
    expect(decodeCheckpoint(encodeCheckpoint(c))).toEqual(c);
    expect(decodeCheckpoint(encodeCheckpoint(c), 6).epoch).toBe(6);
  });

  it('state - a checkpoint of an older version (no holds) and fields of the wrong type decode safely', () => {
    expect(decodeCheckpoint({ seq: 5, pending: [], counts: { n: 1 }, handled: 2, epoch: 1 })).toEqual({ seq: 5, pending: [], holds: [], counts: { n: 1 }, handled: 2, epoch: 1 });
    expect(decodeCheckpoint({ seq: 'x', pending: [{ key: 'no seq' }, 3], counts: { n: 'one', m: 2 }, holds: [{ counts: {}, seqs: ['a', 4] }] })).toEqual({
      seq: 0,
      pending: [],
      holds: [{ counts: {}, seqs: [4] }],
      counts: { m: 2 },
      handled: 0,
      epoch: 0,
    });
  });

  it('state - leases and replica counts', () => {
    expect(decodeLease(encodeLease({ owner: 'w1', epoch: 3, expiresAt: 99, gen: 2 }))).toEqual({ owner: 'w1', epoch: 3, expiresAt: 99, gen: 2 });
    expect(decodeLease({ owner: 1, epoch: 'x' })).toEqual({ owner: '', epoch: 0, expiresAt: 0, gen: 0 });
    expect(decodeReplicas({ replicas: 3, at: 10 })).toEqual({ replicas: 3, at: 10 });
    expect(decodeReplicas({ replicas: 0 })).toBeUndefined();
    expect(decodeReplicas({ replicas: 1.5 })).toBeUndefined();
  });
});
